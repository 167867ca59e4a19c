// embedding, write_rows and copy_column_blocks: exact copies into guarded, poisoned outputs,
// including rows longer than 4096, repeated ids, views with offsets and the range errors.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "harness.h"
#include "moeflux/util/error.h"

namespace moeflux::test {
namespace {

class Embedding : public ::testing::TestWithParam<std::int64_t> {};

TEST_P(Embedding, GathersRowsExactly) {
  const std::int64_t H = GetParam();
  const std::int64_t V = 37;
  auto backend = make_backend();
  const std::vector<float> table = random_values(static_cast<std::size_t>(V * H), 5);
  Guarded tab(*backend, {V, H}, table);
  const std::vector<std::int32_t> ids = {0, 36, 5, 5, 17, 0, 36};
  const auto T = static_cast<std::int64_t>(ids.size());
  Guarded out(*backend, {T, H});
  backend->embedding(tab.tensor(), ids, out.tensor());
  const std::vector<float> got = out.values();
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t c = 0; c < H; ++c) {
      ASSERT_EQ(got[static_cast<std::size_t>(t * H + c)],
                table[static_cast<std::size_t>(ids[static_cast<std::size_t>(t)] * H + c)])
          << t << "," << c;
    }
  }
  out.expect_guards_intact("embedding");
}

INSTANTIATE_TEST_SUITE_P(Widths, Embedding, ::testing::Values(1, 31, 32, 33, 4099),
                         [](const auto& test) { return util::concat("H", test.param); });

TEST(EmbeddingErrors, IdOutsideVocabularyAndShapes) {
  auto backend = make_backend();
  Tensor table = backend->empty({4, 3});
  Tensor out = backend->empty({2, 3});
  EXPECT_THROW(backend->embedding(table, std::vector<std::int32_t>{1, 4}, out), ShapeError);
  EXPECT_THROW(backend->embedding(table, std::vector<std::int32_t>{-1, 0}, out), ShapeError);
  EXPECT_THROW(backend->embedding(table, std::vector<std::int32_t>{1}, out), ShapeError);
  Tensor wide = backend->empty({2, 4});
  EXPECT_THROW(backend->embedding(table, std::vector<std::int32_t>{1, 2}, wide), ShapeError);
}

TEST(WriteRows, CopiesIntoTheCacheAndNothingElse) {
  auto backend = make_backend();
  const std::int64_t capacity = 11, nkv = 3, D = 33;
  const std::vector<float> cache_init = random_values(static_cast<std::size_t>(capacity * nkv * D), 6);
  Guarded cache(*backend, {capacity, nkv, D}, cache_init);
  // The source is rows 1..4 of a larger guarded tensor: a view with a non-zero offset.
  const std::vector<float> src_all = random_values(static_cast<std::size_t>(6 * nkv * D), 7);
  Guarded src(*backend, {6, nkv, D}, src_all);
  const Tensor rows = src.tensor().rows(1, 4);
  backend->write_rows(rows, cache.tensor(), 6);
  const std::vector<float> got = cache.values();
  const std::int64_t row = nkv * D;
  for (std::int64_t r = 0; r < capacity; ++r) {
    for (std::int64_t c = 0; c < row; ++c) {
      const float want = (r >= 6 && r < 10) ? src_all[static_cast<std::size_t>((r - 6 + 1) * row + c)]
                                            : cache_init[static_cast<std::size_t>(r * row + c)];
      ASSERT_EQ(got[static_cast<std::size_t>(r * row + c)], want) << r << "," << c;
    }
  }
  cache.expect_guards_intact("write_rows");
  // The last row exactly fits; one more does not.
  EXPECT_NO_THROW(backend->write_rows(rows.rows(0, 1), cache.tensor(), capacity - 1));
  EXPECT_THROW(backend->write_rows(rows, cache.tensor(), 8), ShapeError);
  EXPECT_THROW(backend->write_rows(rows, cache.tensor(), -1), ShapeError);
  Tensor narrow = backend->empty({2, nkv, D - 1});
  EXPECT_THROW(backend->write_rows(narrow, cache.tensor(), 0), ShapeError);
}

struct BlocksCase {
  std::int64_t T, groups, group_stride, src_col, width, dst_col, dst_cols;
};

class CopyColumnBlocks : public ::testing::TestWithParam<BlocksCase> {};

// Blocks as the hybrid models use them (gated attention's query and gate halves per head,
// Qwen3-Next's q/k/v/z slices per key-head group) and odd ones; dst columns outside the blocks
// keep their poison.
TEST_P(CopyColumnBlocks, CopiesTheBlocksAndNothingElse) {
  const BlocksCase c = GetParam();
  auto backend = make_backend();
  const std::int64_t src_cols = c.groups * c.group_stride;
  const std::vector<float> src = random_values(static_cast<std::size_t>(c.T * src_cols), 9);
  Guarded in(*backend, {c.T, src_cols}, src);
  Guarded out(*backend, {c.T, c.dst_cols});
  backend->copy_column_blocks(in.tensor(), {c.groups, c.group_stride, c.src_col, c.width, c.dst_col}, out.tensor());
  const std::vector<float> got = out.values();
  for (std::int64_t t = 0; t < c.T; ++t) {
    for (std::int64_t col = 0; col < c.dst_cols; ++col) {
      const float value = got[static_cast<std::size_t>(t * c.dst_cols + col)];
      const std::int64_t rel = col - c.dst_col;
      if (rel < 0 || rel >= c.groups * c.width) {
        ASSERT_TRUE(std::isnan(value)) << t << "," << col << " was written";
        continue;
      }
      const std::int64_t g = rel / c.width, w = rel % c.width;
      ASSERT_EQ(value, src[static_cast<std::size_t>(t * src_cols + g * c.group_stride + c.src_col + w)])
          << t << "," << col;
    }
  }
  out.expect_guards_intact("copy_column_blocks");
}

INSTANTIATE_TEST_SUITE_P(Shapes, CopyColumnBlocks,
                         ::testing::Values(BlocksCase{5, 4, 64, 32, 32, 0, 128},  // gate half of [T, 4, 2*32]
                                           BlocksCase{3, 2, 80, 16, 16, 32, 96},   // k of a qkvz group, after q
                                           BlocksCase{1, 1, 4099, 7, 4000, 3, 4100},
                                           BlocksCase{7, 3, 5, 0, 5, 0, 15}, BlocksCase{2, 5, 3, 2, 1, 1, 7}),
                         [](const auto& test) {
                           const BlocksCase& c = test.param;
                           return util::concat("T", c.T, "_G", c.groups, "_S", c.group_stride, "_at", c.src_col,
                                               "_W", c.width, "_to", c.dst_col);
                         });

TEST(CopyColumnBlocksErrors, BlocksOutsideTheTensors) {
  auto backend = make_backend();
  Tensor src = backend->empty({3, 12}), dst = backend->empty({3, 8});
  EXPECT_THROW(backend->copy_column_blocks(src, {4, 3, 1, 3, 0}, dst), ShapeError);  // past the group
  EXPECT_THROW(backend->copy_column_blocks(src, {3, 3, 0, 3, 0}, dst), ShapeError);  // 9 != 12 columns
  EXPECT_THROW(backend->copy_column_blocks(src, {4, 3, 0, 2, 1}, dst), ShapeError);  // past dst
  Tensor rows4 = backend->empty({4, 8});
  EXPECT_THROW(backend->copy_column_blocks(src, {4, 3, 0, 2, 0}, rows4), ShapeError);
}

}  // namespace
}  // namespace moeflux::test
