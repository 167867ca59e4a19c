// The gated delta rule of one value head on raw float32 pointers, in two algorithms that compute
// the same recurrence: per token, and chunked (the UT transform of transformers' chunked form).
// q and k are read already l2-normalised (q also scaled by dk^-0.5), [T, dk] with a row stride.
#pragma once

#include <cstdint>
#include <vector>

namespace moeflux::backend::cpu {

// One value head's operands: rows t of q, k at q + t * qk_stride (dk floats), of v and out at
// v + t * v_stride (dv floats), and g, beta at g[t * gb_stride]; the state S [dk, dv] is updated.
struct DeltaHead {
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  const float* g = nullptr;
  const float* beta = nullptr;
  float* state = nullptr;
  float* out = nullptr;
  std::int64_t T = 0, dk = 0, dv = 0;
  std::int64_t qk_stride = 0, v_stride = 0, gb_stride = 0;
};

// Per token: S = exp(g) S; u = beta (v - S^T k); S += k u^T; out = S^T q.
void delta_rule_recurrent(const DeltaHead& head, std::vector<float>& scratch);

// The same in chunks of `chunk` tokens: within a chunk, with gamma the cumulative log-decay and
// S0 the state at its start, u solves u_i = beta_i (v_i - e^gamma_i S0^T k_i
// - sum_{j<i} e^(gamma_i - gamma_j) (k_i.k_j) u_j) by forward substitution; then
// out_i = e^gamma_i S0^T q_i + sum_{j<=i} e^(gamma_i - gamma_j) (q_i.k_j) u_j and
// S = e^gamma_last S0 + sum_j e^(gamma_last - gamma_j) k_j u_j^T. Every exponent is <= 0.
void delta_rule_chunked(const DeltaHead& head, std::int64_t chunk, std::vector<float>& scratch);

}  // namespace moeflux::backend::cpu
