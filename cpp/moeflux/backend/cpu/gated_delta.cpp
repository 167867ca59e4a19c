// Gated DeltaNet ops in float32, in the order transformers' torch fallbacks compute them
// (Qwen3-Next): the depthwise causal conv, the gates, the gated delta rule (per token, or chunked
// for prefill: delta_rule.h), the gated RMSNorm.
#include <cmath>
#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "moeflux/backend/cpu/cpu_backend.h"
#include "moeflux/backend/cpu/delta_rule.h"
#include "moeflux/backend/cpu/kernels.h"
#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/backend/cpu/weight.h"
#include "moeflux/backend/op_checks.h"
#include "moeflux/util/error.h"

namespace moeflux::backend::cpu {

namespace {

float silu(float x) { return x / (1.0f + std::exp(-x)); }

// A weight as float32: its own bytes when f32, else widened into `scratch`.
const float* f32_weight(const Tensor& w, AlignedBuffer& scratch, const char* op, const char* what) {
  const WeightRef ref = weight_ref(w, op, what);
  if (ref.dtype == Dtype::f32) return reinterpret_cast<const float*>(ref.data);
  float* widened = scratch.reserve(ref.rows * ref.cols);
  widen_rows(ref, 0, ref.rows, widened);
  return widened;
}

// x * rsqrt(sum x^2 + 1e-6) * scale, into out [n]
void l2_normalise(const float* x, std::int64_t n, float scale, float* out) {
  const float r = 1.0f / std::sqrt(dot(x, x, n) + 1e-6f);
  for (std::int64_t i = 0; i < n; ++i) out[i] = (x[i] * r) * scale;
}

}  // namespace

void CpuBackend::causal_conv1d(const Tensor& x, const Tensor& weight, Tensor& state, Tensor& out) {
  check_rank(x, 2, "causal_conv1d", "x");
  check_rank(weight, 2, "causal_conv1d", "weight");
  check_rank(state, 2, "causal_conv1d", "state");
  const std::int64_t T = x.dim(0), C = x.dim(1), K = weight.dim(1);
  MF_CHECK(weight.dim(0) == C && K >= 1, ShapeError, "[causal_conv1d] weight ",
           format::shape_string(weight.shape()), " must be [C, K] with C = ", C, " (x's channels)");
  MF_CHECK(state.dim(0) == K - 1 && state.dim(1) == C, ShapeError, "[causal_conv1d] state ",
           format::shape_string(state.shape()), " must be [K-1, C] = [", K - 1, ", ", C, "]");
  MF_CHECK(out.shape() == x.shape(), ShapeError, "[causal_conv1d] out ",
           format::shape_string(out.shape()), " must match x ", format::shape_string(x.shape()));
  check_disjoint_or_same(x, out, "causal_conv1d", "x");
  check_disjoint(state, out, "causal_conv1d", "state");
  check_disjoint(state, x, "causal_conv1d", "state");
  check_disjoint(weight, out, "causal_conv1d", "weight");
  check_disjoint(weight, state, "causal_conv1d", "weight");
  const float* w = f32_weight(weight, conv_weight_, "causal_conv1d", "weight");
  const float* xs = data_of(x, "causal_conv1d", "x");
  float* st = data_of(state, "causal_conv1d", "state");
  float* o = data_of(out, "causal_conv1d", "out");
  if (T == 0 || C == 0) return;
  // The window: the K-1 state rows, then the T input rows (copied, so out may alias x).
  const std::int64_t rows = K - 1 + T;
  float* win = conv_window_.reserve(rows * C);
  std::memcpy(win, st, static_cast<std::size_t>((K - 1) * C) * sizeof(float));
  std::memcpy(win + (K - 1) * C, xs, static_cast<std::size_t>(T * C) * sizeof(float));
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t c = 0; c < C; ++c) {
      float acc = 0.0f;
      for (std::int64_t i = 0; i < K; ++i) acc += w[c * K + i] * win[(t + i) * C + c];
      o[t * C + c] = silu(acc);
    }
  }
  std::memcpy(st, win + T * C, static_cast<std::size_t>((K - 1) * C) * sizeof(float));
}

void CpuBackend::gated_delta_rule(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                                  const Tensor& beta, const DeltaRuleOptions& options, Tensor& state,
                                  Tensor& out) {
  const char* op = "gated_delta_rule";
  check_rank(q, 3, op, "q");
  check_rank(v, 3, op, "v");
  check_rank(g, 2, op, "g");
  check_rank(state, 3, op, "state");
  const std::int64_t T = q.dim(0), HK = q.dim(1), dk = q.dim(2), HV = v.dim(1), dv = v.dim(2);
  MF_CHECK(k.shape() == q.shape(), ShapeError, "[gated_delta_rule] k ", format::shape_string(k.shape()),
           " must match q ", format::shape_string(q.shape()), " [T, HK, dk]");
  MF_CHECK(v.dim(0) == T && HK > 0 && HV % HK == 0 && HV > 0, ShapeError, "[gated_delta_rule] v ",
           format::shape_string(v.shape()), " must be [T, HV, dv] with T = ", T,
           " and HV a multiple of HK = ", HK);
  const Shape heads{T, HV}, state_shape{HV, dk, dv};
  MF_CHECK(g.shape() == heads && beta.shape() == heads, ShapeError,
           "[gated_delta_rule] g ", format::shape_string(g.shape()), " and beta ",
           format::shape_string(beta.shape()), " must be [T, HV] = [", T, ", ", HV, "]");
  MF_CHECK(state.shape() == state_shape, ShapeError, "[gated_delta_rule] state ",
           format::shape_string(state.shape()), " must be [HV, dk, dv] = [", HV, ", ", dk, ", ", dv, "]");
  MF_CHECK(out.shape() == v.shape(), ShapeError, "[gated_delta_rule] out ",
           format::shape_string(out.shape()), " must match v ", format::shape_string(v.shape()));
  MF_CHECK(options.chunk_size >= 1, ShapeError, "[gated_delta_rule] chunk_size ", options.chunk_size,
           " must be at least 1");
  for (const auto& [t, what] : {std::pair{&q, "q"}, {&k, "k"}, {&v, "v"}, {&g, "g"}, {&beta, "beta"}}) {
    check_disjoint(*t, out, op, what);
    check_disjoint(*t, state, op, what);
  }
  check_disjoint(state, out, op, "state");
  const float* qs = data_of(q, op, "q");
  const float* ks = data_of(k, op, "k");
  const float* vs = data_of(v, op, "v");
  const float* gs = data_of(g, op, "g");
  const float* bs = data_of(beta, op, "beta");
  float* S0 = data_of(state, op, "state");
  float* o = data_of(out, op, "out");
  if (T == 0) return;
  // l2-normalised q (times dk^-0.5) and k, once per key head and token.
  const float scale = 1.0f / std::sqrt(static_cast<float>(dk));
  float* qn = delta_q_.reserve(T * HK * dk);
  float* kn = delta_k_.reserve(T * HK * dk);
  for (std::int64_t row = 0; row < T * HK; ++row) {
    l2_normalise(qs + row * dk, dk, scale, qn + row * dk);
    l2_normalise(ks + row * dk, dk, 1.0f, kn + row * dk);
  }
  const bool chunked = T > 1 && options.chunk_size > 1;
  const std::int64_t C = std::min(options.chunk_size, T);
  delta_scratch_.resize(static_cast<std::size_t>(pool_.size()));
  for (auto& scratch : delta_scratch_) scratch.resize(static_cast<std::size_t>(C + 3 * C * dv + dv));
  const std::int64_t r = HV / HK;
  // Value heads are independent: one thread computes each, in a fixed order.
  pool_.run(HV, [&](std::int64_t h, int thread) {
    DeltaHead head;
    head.q = qn + (h / r) * dk;
    head.k = kn + (h / r) * dk;
    head.v = vs + h * dv;
    head.g = gs + h;
    head.beta = bs + h;
    head.state = S0 + h * dk * dv;
    head.out = o + h * dv;
    head.T = T;
    head.dk = dk;
    head.dv = dv;
    head.qk_stride = HK * dk;
    head.v_stride = HV * dv;
    head.gb_stride = HV;
    std::vector<float>& scratch = delta_scratch_[static_cast<std::size_t>(thread)];
    if (chunked)
      delta_rule_chunked(head, C, scratch);
    else
      delta_rule_recurrent(head, scratch);
  });
}

void CpuBackend::delta_rule_gates(const Tensor& a, const Tensor& b, const Tensor& a_log,
                                  const Tensor& dt_bias, Tensor& g, Tensor& beta) {
  const char* op = "delta_rule_gates";
  check_delta_rule_gates(a, b, a_log, dt_bias, g, beta);
  const std::int64_t T = a.dim(0), HV = a.dim(1);
  AlignedBuffer a_log_scratch, dt_bias_scratch;
  const float* A = f32_weight(a_log, a_log_scratch, op, "a_log");
  const float* dt = f32_weight(dt_bias, dt_bias_scratch, op, "dt_bias");
  const float* as = data_of(a, op, "a");
  const float* bs = data_of(b, op, "b");
  float* go = data_of(g, op, "g");
  float* betas = data_of(beta, op, "beta");
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t h = 0; h < HV; ++h) {
      const std::int64_t e = t * HV + h;
      const float x = as[e] + dt[h];
      const float softplus = x > 20.0f ? x : std::log1p(std::exp(x));  // torch's threshold
      const float sigmoid = 1.0f / (1.0f + std::exp(-bs[e]));
      go[e] = -std::exp(A[h]) * softplus;
      betas[e] = sigmoid;
    }
  }
}

void CpuBackend::gated_rms_norm(const Tensor& x, const Tensor& z, const Tensor& weight, float eps,
                                Tensor& out) {
  const char* op = "gated_rms_norm";
  check_rank(weight, 1, op, "weight");
  const std::int64_t C = weight.dim(0);
  MF_CHECK(x.rank() >= 1 && x.dim(-1) == C && C > 0, ShapeError, "[gated_rms_norm] x ",
           format::shape_string(x.shape()), " must end in the weight's length ", C);
  MF_CHECK(z.shape() == x.shape() && out.shape() == x.shape(), ShapeError, "[gated_rms_norm] z ",
           format::shape_string(z.shape()), " and out ", format::shape_string(out.shape()),
           " must match x ", format::shape_string(x.shape()));
  check_disjoint_or_same(x, out, op, "x");
  check_disjoint_or_same(z, out, op, "z");
  check_disjoint(weight, out, op, "weight");
  const float* w = f32_weight(weight, norm_weight_, op, "weight");
  const float* xs = data_of(x, op, "x");
  const float* zs = data_of(z, op, "z");
  float* o = data_of(out, op, "out");
  const std::int64_t R = x.numel() / C;
  for (std::int64_t r = 0; r < R; ++r) {
    const float* xr = xs + r * C;
    const float* zr = zs + r * C;
    float* yr = o + r * C;
    const float inv_rms = 1.0f / std::sqrt(dot(xr, xr, C) / static_cast<float>(C) + eps);
    for (std::int64_t c = 0; c < C; ++c) yr[c] = (w[c] * (xr[c] * inv_rms)) * silu(zr[c]);
  }
}

}  // namespace moeflux::backend::cpu
