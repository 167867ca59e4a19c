// embedding and write_rows on Vulkan against the CPU backend, bit for bit: f32/f16/bf16 tables in
// every configuration (tables larger than one binding go through windows), odd widths past 4096,
// appends into a cache view, and a copy between overlapping rows.
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "moeflux/util/error.h"
#include "vulkan_harness.h"

namespace moeflux::test {
namespace {

std::vector<std::int32_t> random_ids(std::size_t n, std::int64_t vocab, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::int64_t> dist(0, vocab - 1);
  std::vector<std::int32_t> ids(n);
  for (auto& id : ids) id = static_cast<std::int32_t>(dist(rng));
  ids.back() = static_cast<std::int32_t>(vocab - 1);  // the last row, where windows end
  return ids;
}

class VulkanEmbedding : public VulkanParamTest<OpCase> {};

TEST_P(VulkanEmbedding, MatchesCpu) {
  struct Dims {
    std::int64_t V, H, T;
  };
  const Dims dims[] = {{1, 1, 1}, {7, 31, 7}, {33, 64, 33}, {257, 65, 5}, {65, 4099, 31}};
  unsigned seed = 400;
  for (const Dims& d : dims) {
    SCOPED_TRACE(util::concat("V=", d.V, " H=", d.H, " T=", d.T));
    const StoredWeight table(GetParam().dtype, {d.V, d.H}, random_values(static_cast<std::size_t>(d.V * d.H), ++seed));
    const std::vector<std::int32_t> ids = random_ids(static_cast<std::size_t>(d.T), d.V, ++seed);
    Guarded outc(*cpu_, {d.T, d.H});
    cpu_->embedding(cpu_->resident(table.view()), ids, outc.tensor());
    Guarded outg(*gpu_, {d.T, d.H});
    gpu_->embedding(gpu_->resident(table.view()), ids, outg.tensor());
    expect_same_bits(outg.values(), outc.values(), "embedding");
    outg.expect_guards_intact("embedding");
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, VulkanEmbedding,
                         ::testing::ValuesIn(op_cases({format::Dtype::f32, format::Dtype::f16, format::Dtype::bf16})),
                         op_case_name);

class VulkanWriteRows : public VulkanParamTest<OpCase> {};

TEST_P(VulkanWriteRows, MatchesCpu) {
  struct Dims {
    std::int64_t T, heads, D, capacity, first;
  };
  const Dims dims[] = {{1, 1, 1, 1, 0}, {7, 2, 33, 64, 5}, {33, 1, 63, 65, 32}, {3, 4, 4099, 9, 6}};
  unsigned seed = 500;
  for (const Dims& d : dims) {
    SCOPED_TRACE(util::concat("T=", d.T, " heads=", d.heads, " D=", d.D, " first=", d.first));
    const std::vector<float> src = random_values(static_cast<std::size_t>(d.T * d.heads * d.D), ++seed);
    const std::vector<float> cache = random_values(static_cast<std::size_t>(d.capacity * d.heads * d.D), ++seed);
    Guarded srcc(*cpu_, {d.T, d.heads, d.D}, src), cachec(*cpu_, {d.capacity, d.heads, d.D}, cache);
    cpu_->write_rows(srcc.tensor(), cachec.tensor(), d.first);
    Guarded srcg(*gpu_, {d.T, d.heads, d.D}, src), cacheg(*gpu_, {d.capacity, d.heads, d.D}, cache);
    gpu_->write_rows(srcg.tensor(), cacheg.tensor(), d.first);
    expect_same_bits(cacheg.values(), cachec.values(), "write_rows");
    cacheg.expect_guards_intact("write_rows");
    // Overlapping rows of one tensor, as memmove: rows [0, T) to [first, first + T) of the cache.
    const Tensor from_c = cachec.tensor().rows(0, d.T), from_g = cacheg.tensor().rows(0, d.T);
    cpu_->write_rows(from_c, cachec.tensor(), d.first);
    gpu_->write_rows(from_g, cacheg.tensor(), d.first);
    expect_same_bits(cacheg.values(), cachec.values(), "write_rows overlapping");
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, VulkanWriteRows, ::testing::ValuesIn(op_cases()), op_case_name);

TEST_F(VulkanTest, RowErrors) {
  Tensor table = gpu_->empty({4, 8}), out = gpu_->empty({2, 8});
  const std::vector<std::int32_t> bad = {1, 4};
  EXPECT_THROW(gpu_->embedding(table, bad, out), ShapeError);
  Tensor src = gpu_->empty({3, 8}), cache = gpu_->empty({4, 8});
  EXPECT_THROW(gpu_->write_rows(src, cache, 2), ShapeError);
}

}  // namespace
}  // namespace moeflux::test
