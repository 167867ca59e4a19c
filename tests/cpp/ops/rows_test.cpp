// embedding and write_rows: exact row copies into guarded, poisoned outputs, including rows longer
// than 4096, repeated ids, views with offsets and the range errors.
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

}  // namespace
}  // namespace moeflux::test
