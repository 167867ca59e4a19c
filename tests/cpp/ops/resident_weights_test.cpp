// Resident weights in their stored dtype: quantized tensors borrow their bytes and download
// widened exactly; embedding gathers rows of quantized and 16-bit tables exactly as format's
// dequantizer widens them; rms_norm takes 16-bit weights; row views of 16-bit weights multiply.
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "harness.h"
#include "moeflux/backend/cpu/cpu_backend.h"
#include "moeflux/util/error.h"
#include "reference.h"
#include "stored_weight.h"

namespace moeflux::test {
namespace {

using format::Dtype;

void expect_same_bits(const std::vector<float>& got, const float* want, std::size_t n, const std::string& what) {
  ASSERT_EQ(got.size(), n) << what;
  std::size_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) bad += std::memcmp(&got[i], &want[i], sizeof(float)) != 0;
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << n << " elements differ";
}

class ResidentQuant : public ::testing::TestWithParam<std::tuple<Dtype, int>> {};

TEST_P(ResidentQuant, BorrowsAndDownloadsExactly) {
  const auto [dtype, group] = GetParam();
  auto backend = make_backend();
  const StoredWeight w = make_weight(dtype, 37, 3 * group, 11, {0, group, Dtype::f16});
  const Tensor t = backend->resident(w.view("w"));
  EXPECT_EQ(t.dtype(), dtype);
  EXPECT_TRUE(t.quantized());
  EXPECT_EQ(t.quant().bits, format::quant_bits(dtype));
  EXPECT_EQ(t.quant().scale_dtype, Dtype::f16);
  const auto* storage = dynamic_cast<const backend::cpu::WeightStorage*>(t.storage());
  ASSERT_NE(storage, nullptr);
  EXPECT_EQ(storage->data(), w.bytes.data());
  EXPECT_EQ(storage->nbytes(), w.bytes.size());
  std::vector<float> got(w.values.size());
  backend->download(t, got);
  expect_same_bits(got, w.values.data(), w.values.size(), "download");
}

TEST_P(ResidentQuant, EmbeddingGathersWidenedRows) {
  const auto [dtype, group] = GetParam();
  auto backend = make_backend();
  const std::int64_t V = 29, H = 4096 + group;
  const StoredWeight w = make_weight(dtype, V, H, 12, {0, group, Dtype::bf16});
  const Tensor table = backend->resident(w.view("model.embed_tokens.weight"));
  const std::vector<std::int32_t> ids = {0, 28, 5, 5, 17};
  const auto T = static_cast<std::int64_t>(ids.size());
  Guarded out(*backend, {T, H});
  backend->embedding(table, ids, out.tensor());
  const std::vector<float> got = out.values();
  for (std::int64_t t = 0; t < T; ++t) {
    const std::vector<float> row(got.begin() + t * H, got.begin() + (t + 1) * H);
    expect_same_bits(row, w.values.data() + ids[static_cast<std::size_t>(t)] * H, static_cast<std::size_t>(H),
                     util::concat("row ", t));
  }
  out.expect_guards_intact("embedding");
}

std::string quant_name(const ::testing::TestParamInfo<std::tuple<Dtype, int>>& info) {
  const auto [dtype, group] = info.param;
  return util::concat(format::dtype_name(dtype), "_g", group);
}

INSTANTIATE_TEST_SUITE_P(Variants, ResidentQuant,
                         ::testing::Combine(::testing::Values(Dtype::q8, Dtype::q4, Dtype::q3, Dtype::q2),
                                            ::testing::Values(32, 64, 128)),
                         quant_name);

class ResidentHalf : public ::testing::TestWithParam<Dtype> {};

TEST_P(ResidentHalf, EmbeddingGathersWidenedRows) {
  auto backend = make_backend();
  const std::int64_t V = 13, H = 67;
  const StoredWeight w = make_weight(GetParam(), V, H, 13);
  const Tensor table = backend->resident(w.view("model.embed_tokens.weight"));
  const std::vector<std::int32_t> ids = {12, 0, 3};
  Guarded out(*backend, {3, H});
  backend->embedding(table, ids, out.tensor());
  const std::vector<float> got = out.values();
  for (std::size_t t = 0; t < ids.size(); ++t) {
    const std::vector<float> row(got.begin() + static_cast<std::ptrdiff_t>(t) * H,
                                 got.begin() + static_cast<std::ptrdiff_t>(t + 1) * H);
    expect_same_bits(row, w.values.data() + ids[t] * H, static_cast<std::size_t>(H), util::concat("row ", t));
  }
  out.expect_guards_intact("embedding");
}

TEST_P(ResidentHalf, RmsNormWithA16BitWeightEqualsItsWidenedCopy) {
  auto backend = make_backend();
  const std::int64_t C = 65;
  const StoredWeight w = make_weight(GetParam(), 1, C, 14);
  format::TensorView view = w.view("model.norm.weight");
  view.shape = {C};
  const Tensor stored = backend->resident(view);
  Guarded widened(*backend, {C}, w.values);
  const std::vector<float> x = random_values(static_cast<std::size_t>(3 * C), 15);
  Guarded xt(*backend, {3, C}, x);
  Guarded a(*backend, {3, C});
  Guarded b(*backend, {3, C});
  backend->rms_norm(xt.tensor(), stored, {}, a.tensor());
  backend->rms_norm(xt.tensor(), widened.tensor(), {}, b.tensor());
  const std::vector<float> want = b.values();
  expect_same_bits(a.values(), want.data(), want.size(), "rms_norm");
  a.expect_guards_intact("rms_norm");
}

TEST_P(ResidentHalf, RowViewOfAWeightMultipliesThoseRows) {
  auto backend = make_backend();
  const std::int64_t N = 19, K = 40, T = 2;
  const StoredWeight w = make_weight(GetParam(), N, K, 16);
  const Tensor all = backend->resident(w.view("lm_head.weight"));
  const Tensor some = all.rows(5, 7);
  const std::vector<float> x = random_values(static_cast<std::size_t>(T * K), 17);
  Guarded xt(*backend, {T, K}, x);
  Guarded y(*backend, {T, 7});
  backend->matmul(xt.tensor(), some, y.tensor());
  const std::vector<float> rows(w.values.begin() + 5 * K, w.values.begin() + 12 * K);
  expect_close(y.values(), matmul_ref(x, rows, T, K, 7), 1e-6, "matmul of a row view");
  y.expect_guards_intact("matmul of a row view");
}

INSTANTIATE_TEST_SUITE_P(Dtypes, ResidentHalf, ::testing::Values(Dtype::f16, Dtype::bf16),
                         [](const auto& test) { return std::string(format::dtype_name(test.param)); });

}  // namespace
}  // namespace moeflux::test
