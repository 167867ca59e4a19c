// The CPU kernels on raw, contiguous, row-major float32 pointers, shared by the CpuBackend ops
// and the tests. Arithmetic is float32 with float32 accumulation, in the order PyTorch uses
// where that matters (sum, then divide; x * (1/sqrt); exp(s - max)). Shapes are outer to inner.
#pragma once

#include <cstdint>
#include <span>

#include "moeflux/backend/backend.h"
#include "moeflux/backend/cpu/cpu_backend.h"
#include "moeflux/backend/cpu/weight.h"

namespace moeflux::backend::cpu {

// sum a[i] * b[i] in float32, over 16 interleaved partial sums (vectorisable, and closer to
// PyTorch's blocked reductions than one running sum), combined pairwise.
inline float dot(const float* a, const float* b, std::int64_t n) {
  constexpr int lanes = 16;
  float acc[lanes] = {};
  std::int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    for (int l = 0; l < lanes; ++l) acc[l] += a[i + l] * b[i + l];
  }
  for (int l = 0; i < n; ++i, ++l) acc[l] += a[i] * b[i];
  for (int width = lanes / 2; width > 0; width /= 2) {
    for (int l = 0; l < width; ++l) acc[l] += acc[l + width];
  }
  return acc[0];
}

// out[t] = table[ids[t]]; table [V, cols], out [ids.size(), cols]; ids already range-checked.
void embedding(const float* table, std::int64_t cols, std::span<const std::int32_t> ids, float* out);

// out[r] = x[r] * (1 / sqrt(mean(x[r]^2) + eps)) * w (or * (1 + w)); x, out [rows, cols], w [cols].
void rms_norm(const float* x, const float* w, std::int64_t rows, std::int64_t cols,
              const NormOptions& options, float* out);

// y = x w^T; x [T, K], w [N, K] stored in any dtype (weight.h), y [T, N]; y must not overlap x or
// w. Each element of y is computed by one thread in a fixed order, so the bits do not depend on
// the thread count.
void weight_matmul(const float* x, std::int64_t T, const WeightRef& w, float* y, MatmulContext& ctx);

// Rotates x [T, heads, D] in place (NeoX halves over the first rotary_dim channels); positions [T].
void rope(float* x, std::int64_t T, std::int64_t heads, std::int64_t D,
          const std::int32_t* positions, const RopeOptions& options);

struct AttentionDims {
  std::int64_t T = 0;    // query rows
  std::int64_t nh = 0;   // query heads
  std::int64_t nkv = 0;  // KV heads; divides nh
  std::int64_t D = 0;    // q/k head dimension
  std::int64_t Dv = 0;   // v head dimension
};
// q [T, nh, D], k [>= n_past + T, nkv, D], v [>= n_past + T, nkv, Dv], out [T, nh, Dv].
// (row, head) items are split over the pool; each is computed the same way whatever the split.
// `scratch` holds one score row per thread.
void attention(const float* q, const float* k, const float* v, const AttentionDims& dims,
               const AttentionOptions& options, ThreadPool& pool, AlignedBuffer& scratch, float* out);

// out = silu(gate) * up over n elements; out may alias gate or up.
void swiglu(const float* gate, const float* up, std::int64_t n, float* out);
// out = a + b over n elements; out may alias a or b.
void add(const float* a, const float* b, std::int64_t n, float* out);
// out[t, c] = sigmoid(gate[t, c / (C / G)]) * x[t, c]; gate [T, G], x and out [T, C].
void sigmoid_mul(const float* gate, const float* x, std::int64_t T, std::int64_t G, std::int64_t C,
                 float* out);

// One expert's weights as stored: gate [I, H], up [I, H], down [H, I].
struct ExpertRefs {
  WeightRef gate, up, down;
};
// out[tokens[r]] += weights[r] * down(silu(gate x) * up x) for x = x[tokens[r]], in the order of
// `tokens`. x, out [T, hidden]; scratch x/gate/up/y are grown as needed.
void moe_expert_accumulate(const float* x, std::int64_t hidden, std::span<const std::int64_t> tokens,
                           std::span<const float> weights, const ExpertRefs& expert,
                           MoeScratch& scratch, MatmulContext& ctx, float* out);

}  // namespace moeflux::backend::cpu
