// The gated delta rule of one value head, per token and chunked (delta_rule.h). Loops run along
// dv, the contiguous axis of the state, so that they vectorise.
#include "moeflux/backend/cpu/delta_rule.h"

#include <algorithm>
#include <cmath>

#include "moeflux/backend/cpu/kernels.h"

namespace moeflux::backend::cpu {

namespace {

// y[0, n) += a * x[0, n)
void axpy(float a, const float* x, std::int64_t n, float* y) {
  for (std::int64_t j = 0; j < n; ++j) y[j] += a * x[j];
}

// out [dv] = S^T x for S [dk, dv], x [dk]
void read_state(const float* S, const float* x, std::int64_t dk, std::int64_t dv, float* out) {
  std::fill(out, out + dv, 0.0f);
  for (std::int64_t i = 0; i < dk; ++i) axpy(x[i], S + i * dv, dv, out);
}

}  // namespace

void delta_rule_recurrent(const DeltaHead& h, std::vector<float>& scratch) {
  const std::int64_t dk = h.dk, dv = h.dv;
  scratch.resize(static_cast<std::size_t>(dv));
  float* u = scratch.data();
  float* S = h.state;
  for (std::int64_t t = 0; t < h.T; ++t) {
    const float* q = h.q + t * h.qk_stride;
    const float* k = h.k + t * h.qk_stride;
    const float* v = h.v + t * h.v_stride;
    float* out = h.out + t * h.v_stride;
    const float decay = std::exp(h.g[t * h.gb_stride]);
    const float beta = h.beta[t * h.gb_stride];
    // Decay S and read u = S^T k in one pass over its rows.
    std::fill(u, u + dv, 0.0f);
    for (std::int64_t i = 0; i < dk; ++i) {
      float* Si = S + i * dv;
      for (std::int64_t j = 0; j < dv; ++j) {
        Si[j] *= decay;
        u[j] += Si[j] * k[i];
      }
    }
    for (std::int64_t j = 0; j < dv; ++j) u[j] = (v[j] - u[j]) * beta;
    // The rank-1 update and out = S^T q in a second pass.
    std::fill(out, out + dv, 0.0f);
    for (std::int64_t i = 0; i < dk; ++i) {
      float* Si = S + i * dv;
      for (std::int64_t j = 0; j < dv; ++j) {
        Si[j] += k[i] * u[j];
        out[j] += Si[j] * q[i];
      }
    }
  }
}

void delta_rule_chunked(const DeltaHead& h, std::int64_t chunk, std::vector<float>& scratch) {
  const std::int64_t dk = h.dk, dv = h.dv, C = std::max<std::int64_t>(chunk, 1);
  // gamma [C], u [C, dv], read of S0 by k and by q [C, dv] each
  scratch.resize(static_cast<std::size_t>(C + 3 * C * dv));
  float* gamma = scratch.data();
  float* u = gamma + C;
  float* sk = u + C * dv;
  float* sq = sk + C * dv;
  float* S = h.state;
  for (std::int64_t c0 = 0; c0 < h.T; c0 += C) {
    const std::int64_t L = std::min(C, h.T - c0);
    auto q = [&](std::int64_t i) { return h.q + (c0 + i) * h.qk_stride; };
    auto k = [&](std::int64_t i) { return h.k + (c0 + i) * h.qk_stride; };
    float acc = 0.0f;
    for (std::int64_t i = 0; i < L; ++i) gamma[i] = acc += h.g[(c0 + i) * h.gb_stride];
    for (std::int64_t i = 0; i < L; ++i) {
      read_state(S, k(i), dk, dv, sk + i * dv);
      read_state(S, q(i), dk, dv, sq + i * dv);
    }
    // u by forward substitution (the UT transform's triangular solve, one row at a time).
    for (std::int64_t i = 0; i < L; ++i) {
      const float beta = h.beta[(c0 + i) * h.gb_stride];
      const float decay = std::exp(gamma[i]);
      const float* v = h.v + (c0 + i) * h.v_stride;
      float* ui = u + i * dv;
      for (std::int64_t j = 0; j < dv; ++j) ui[j] = beta * (v[j] - decay * sk[i * dv + j]);
      for (std::int64_t j = 0; j < i; ++j)
        axpy(-beta * std::exp(gamma[i] - gamma[j]) * dot(k(i), k(j), dk), u + j * dv, dv, ui);
    }
    for (std::int64_t i = 0; i < L; ++i) {
      float* out = h.out + (c0 + i) * h.v_stride;
      const float decay = std::exp(gamma[i]);
      for (std::int64_t j = 0; j < dv; ++j) out[j] = decay * sq[i * dv + j];
      for (std::int64_t j = 0; j <= i; ++j)
        axpy(std::exp(gamma[i] - gamma[j]) * dot(q(i), k(j), dk), u + j * dv, dv, out);
    }
    const float last = gamma[L - 1];
    const float chunk_decay = std::exp(last);
    for (std::int64_t e = 0; e < dk * dv; ++e) S[e] *= chunk_decay;
    for (std::int64_t j = 0; j < L; ++j) {
      const float decay = std::exp(last - gamma[j]);
      const float* kj = k(j);
      for (std::int64_t i = 0; i < dk; ++i) axpy(decay * kj[i], u + j * dv, dv, S + i * dv);
    }
  }
}

}  // namespace moeflux::backend::cpu
