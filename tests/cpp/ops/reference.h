// Plain reference loops for every op, in double precision, written from the math rather than
// from the kernels. Each returns the value and the error scale harness.h compares against.
// Shapes as in backend.h, outer to inner, row-major.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "harness.h"
#include "moeflux/format/dtype.h"
#include "moeflux/format/quant.h"

namespace moeflux::test {

// x [rows, cols], w [cols]
Reference rms_norm_ref(std::span<const float> x, std::span<const float> w, std::int64_t cols,
                       double eps, bool zero_centered);
// y [T, C] / rms(x [T, H]) per row
Reference rms_scale_ref(std::span<const float> x, std::span<const float> y, std::int64_t T, double eps);
// x [T, K], w [N, K] -> [T, N]
Reference matmul_ref(std::span<const float> x, std::span<const float> w, std::int64_t T,
                     std::int64_t K, std::int64_t N);
// x [T, heads, D] at positions [T]
Reference rope_ref(std::span<const float> x, std::span<const std::int32_t> positions,
                   std::int64_t heads, std::int64_t D, int rotary_dim,
                   std::span<const float> inv_freq, float attention_scaling);

struct AttentionCase {
  std::int64_t T, nh, nkv, D, Dv, capacity, n_past, window;
  float scale;
};
// q [T, nh, D], k [capacity, nkv, D], v [capacity, nkv, Dv] -> [T, nh, Dv]
Reference attention_ref(std::span<const float> q, std::span<const float> k,
                        std::span<const float> v, const AttentionCase& c);

Reference swiglu_ref(std::span<const float> gate, std::span<const float> up);
Reference add_ref(std::span<const float> a, std::span<const float> b);
// gate [T, G], x [T, C]
Reference sigmoid_mul_ref(std::span<const float> gate, std::span<const float> x, std::int64_t T);

// One expert as stored: gate [I, H], up [I, H], down [H, I] in `dtype` bytes (quantized: with
// `quant`, widened by format::dequantize_rows).
struct StoredExpert {
  format::Dtype dtype;
  std::int64_t I;
  std::vector<std::byte> gate, up, down;
  format::QuantParams quant{};
};
// x [T, H], experts/weights [T, k] (ids index `experts`) -> [T, H]
Reference moe_ref(std::span<const float> x, std::int64_t H, int k,
                  std::span<const std::int32_t> ids, std::span<const float> weights,
                  std::span<const StoredExpert> experts);

}  // namespace moeflux::test
