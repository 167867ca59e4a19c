// rms_norm over the last axis, as transformers' Qwen3MoeRMSNorm / Qwen3NextRMSNorm compute it in
// float32: variance = sum(x^2) / C, r = 1 / sqrt(variance + eps), y = (x * r) * w or * (1 + w);
// rms_scale: another tensor's rows times the same r; apply_norm_weight: x * w alone.
#include <cmath>

#include "moeflux/backend/cpu/cpu_backend.h"
#include "moeflux/backend/cpu/kernels.h"
#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/backend/cpu/weight.h"
#include "moeflux/util/error.h"

namespace moeflux::backend::cpu {

void rms_norm(const float* x, const float* w, std::int64_t rows, std::int64_t cols,
              const NormOptions& options, float* out) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = out + r * cols;
    const float variance = dot(xr, xr, cols) / static_cast<float>(cols);
    const float inv_rms = 1.0f / std::sqrt(variance + options.eps);
    if (options.zero_centered) {
      for (std::int64_t c = 0; c < cols; ++c) yr[c] = (xr[c] * inv_rms) * (1.0f + w[c]);
    } else {
      for (std::int64_t c = 0; c < cols; ++c) yr[c] = (xr[c] * inv_rms) * w[c];
    }
  }
}

void CpuBackend::rms_norm(const Tensor& x, const Tensor& w, const NormOptions& options, Tensor& out) {
  norm_rows(x, w, options, out, "rms_norm", true);
}

void CpuBackend::apply_norm_weight(const Tensor& x, const Tensor& w, const NormOptions& options, Tensor& out) {
  norm_rows(x, w, options, out, "apply_norm_weight", false);
}

void CpuBackend::norm_rows(const Tensor& x, const Tensor& w, const NormOptions& options, Tensor& out, const char* op,
                           bool normalize) {
  check_rank(w, 1, op, "w");
  const std::int64_t C = w.dim(0);
  MF_CHECK(x.rank() >= 1 && x.dim(-1) == C && C > 0, ShapeError, "[", op, "] x ",
           format::shape_string(x.shape()), " must end in the weight's length ", C);
  MF_CHECK(out.numel() == x.numel() && out.rank() >= 1 && out.dim(-1) == C, ShapeError,
           "[", op, "] out ", format::shape_string(out.shape()), " must match x ",
           format::shape_string(x.shape()));
  check_disjoint_or_same(x, out, op, "x");
  check_disjoint(w, out, op, "w");
  // A resident 16-bit weight is widened per call: C floats, against the T * C of the op.
  const WeightRef weight = weight_ref(w, op, "w");
  const float* wf = reinterpret_cast<const float*>(weight.data);
  if (weight.dtype != Dtype::f32) {
    float* widened = norm_weight_.reserve(C);
    widen_rows(weight, 0, 1, widened);
    wf = widened;
  }
  const float* xs = data_of(x, op, "x");
  float* os = data_of(out, op, "out");
  if (normalize) return cpu::rms_norm(xs, wf, x.numel() / C, C, options, os);
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    const float wc = wf[i % C];
    os[i] = xs[i] * (options.zero_centered ? 1.0f + wc : wc);
  }
}

void CpuBackend::rms_scale(const Tensor& x, float eps, const Tensor& y, Tensor& out) {
  check_rank(x, 2, "rms_scale", "x");
  const std::int64_t T = x.dim(0), H = x.dim(1);
  MF_CHECK(y.rank() >= 1 && y.dim(0) == T && H > 0 && out.shape() == y.shape(), ShapeError, "[rms_scale] x ",
           format::shape_string(x.shape()), ", y ", format::shape_string(y.shape()), ", out ",
           format::shape_string(out.shape()), "; expected x [T, H], y and out [T, ...]");
  const std::int64_t C = T > 0 ? y.numel() / T : 0;
  check_disjoint_or_same(y, out, "rms_scale", "y");
  check_disjoint(x, out, "rms_scale", "x");
  const float* xs = data_of(x, "rms_scale", "x");
  const float* ys = data_of(y, "rms_scale", "y");
  float* os = data_of(out, "rms_scale", "out");
  for (std::int64_t t = 0; t < T; ++t) {
    const float* xr = xs + t * H;
    const float inv_rms = 1.0f / std::sqrt(dot(xr, xr, H) / static_cast<float>(H) + eps);  // as rms_norm
    for (std::int64_t c = 0; c < C; ++c) os[t * C + c] = ys[t * C + c] * inv_rms;
  }
}

}  // namespace moeflux::backend::cpu
