// matmul, matmul_add and norm_matmul: y (+)= x w^T with f32/f16/bf16 weights here, quantized ones
// in ops/quantized.cpp. Few rows of x (decode): matmul_vec, a workgroup per weight row (with
// subgroups) or pair of rows; more: matmul_tiled. A weight larger than one storage binding (an LM
// head on lavapipe's 128 MiB) is split into row ranges, one dispatch each. norm_matmul folds the
// norm into decode matvecs of few rows (the _norm variants: each row's team recomputes x's sum of
// squares), which saves the step that would write rms_norm(x) first.
#include <algorithm>
#include <string>
#include <vector>

#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/backend/vulkan/ops/tensor_access.h"
#include "moeflux/backend/vulkan/vulkan_backend.h"
#include "moeflux/util/error.h"
#include "moeflux/backend/vulkan/ops/matmul_params.h"

namespace moeflux::backend::vk {
namespace {

constexpr std::int64_t kVecMaxT = 8;    // MAX_T of matmul_vec.comp and matmul_vec_q.comp
constexpr std::int64_t kVecRows = 2;    // ROWS of matmul_vec.comp
constexpr std::int64_t kTile = 64;      // TILE of matmul_tiled.comp

void check_product(const Tensor& x, const Tensor& w, const Tensor& y, const Context& ctx, std::string_view op) {
  cpu::check_rank(x, 2, op, "x");
  cpu::check_rank(w, 2, op, "w");
  cpu::check_rank(y, 2, op, "y");
  f32_storage_of(x, ctx, op, "x");
  storage_of(w, ctx, op, "w");
  f32_storage_of(y, ctx, op, "y");
  MF_CHECK(w.dim(1) == x.dim(1) && y.dim(0) == x.dim(0) && y.dim(1) == w.dim(0), ShapeError, "[", op, "] x ",
           format::shape_string(x.shape()), " times w^T with w ", format::shape_string(w.shape()), " into y ",
           format::shape_string(y.shape()), "; expected x [T, K], w [N, K], y [T, N]");
  cpu::check_disjoint(x, y, op, "x");
  cpu::check_disjoint(w, y, op, "w");
}

}  // namespace

void VulkanBackend::matmul(const Tensor& x, const Tensor& w, Tensor& y) {
  check_product(x, w, y, *context_, "matmul");
  record_matmul(x, w, y, false, nullptr);
}

void VulkanBackend::matmul_add(const Tensor& x, const Tensor& w, Tensor& y) {
  check_product(x, w, y, *context_, "matmul_add");
  record_matmul(x, w, y, true, nullptr);
}

bool VulkanBackend::norm_fits_matvec(std::int64_t T, const Tensor& w, const Tensor& norm_weight) const {
  const Context& ctx = *context_;
  if (!ctx.device.features().subgroup_arithmetic || T > kVecMaxT) return false;
  if (w.quantized() && quantized_matvec_takes_quads(T, w)) return false;
  return ctx.pipelines.available(
      norm_variant(w.quantized() ? "matmul_vec_q_norm" : "matmul_vec_norm", w.dtype(), norm_weight.dtype()));
}

void VulkanBackend::check_norm_matmul(const Tensor& x, const Tensor& norm_weight, std::span<const Tensor> ws,
                                      std::span<const Tensor> ys) const {
  const Context& ctx = *context_;
  MF_CHECK(ws.size() == ys.size(), ShapeError, "[norm_matmul] ", ws.size(), " weights but ", ys.size(), " outputs");
  cpu::check_rank(norm_weight, 1, "norm_matmul", "norm_weight");
  storage_of(norm_weight, ctx, "norm_matmul", "norm_weight");
  MF_CHECK(!norm_weight.quantized(), Unsupported,
           "[norm_matmul] a quantized norm weight; store norms as f32, f16 or bf16");
  for (std::size_t i = 0; i < ws.size(); ++i) {
    check_product(x, ws[i], ys[i], ctx, "norm_matmul");
    cpu::check_disjoint(norm_weight, ys[i], "norm_matmul", "norm_weight");
  }
  MF_CHECK(x.dim(1) == norm_weight.dim(0) && x.dim(1) > 0, ShapeError, "[norm_matmul] x ",
           format::shape_string(x.shape()), " must end in the norm weight's length ", norm_weight.dim(0));
}

void VulkanBackend::norm_matmul(const Tensor& x, const Tensor& norm_weight, const NormOptions& options,
                                std::span<const Tensor> ws, std::span<Tensor> ys, Tensor* normed) {
  check_norm_matmul(x, norm_weight, ws, ys);
  const std::int64_t T = x.dim(0);
  std::int64_t rows = 0;
  for (const Tensor& w : ws) rows += w.dim(0);
  const bool fused = rows <= kNormFoldRows &&
                     std::all_of(ws.begin(), ws.end(), [&](const Tensor& w) { return norm_fits_matvec(T, w, norm_weight); });
  if (!fused) return Backend::norm_matmul(x, norm_weight, options, ws, ys, normed);
  // rms_norm(x) for the caller reads only x, like the products: no barrier between them.
  if (normed != nullptr) rms_norm(x, norm_weight, options, *normed);
  const InputNorm norm{norm_weight, options};
  for (std::size_t i = 0; i < ws.size(); ++i) record_matmul(x, ws[i], ys[i], false, &norm);
}

void VulkanBackend::record_matmul(const Tensor& x, const Tensor& w, Tensor& y, bool accumulate, const InputNorm* norm) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  const std::int64_t T = x.dim(0), K = x.dim(1), N = w.dim(0);
  if (T == 0 || N == 0) return;
  if (w.quantized()) return matmul_quantized(x, w, y, accumulate, norm);  // ops/quantized.cpp
  if (K == 0) {  // an empty sum
    if (accumulate) return;
    const std::vector<float> zeros(static_cast<std::size_t>(T * N), 0.0f);
    upload(zeros, y);
    return;
  }

  const bool sg = dev.features().subgroup_arithmetic;
  const std::string vec = norm != nullptr ? norm_variant("matmul_vec_norm", w.dtype(), norm->weight.dtype())
                                          : variant("matmul_vec", w.dtype(), sg);
  const std::string tiled = variant("matmul_tiled", w.dtype());
  const Window gw = norm != nullptr ? whole(norm->weight, dev) : Window{};  // bound only with norm
  // Row ranges such that every binding fits: x and y by rows of T, w by rows of N.
  const std::int64_t t_rows = rows_per_binding(std::max(K, N) * 4, dev, "matmul");
  const std::int64_t n_rows = rows_per_binding(K * static_cast<std::int64_t>(element_bytes(w.dtype())), dev, "matmul");
  for (std::int64_t t0 = 0; t0 < T; t0 += t_rows) {
    const std::int64_t tn = std::min(t_rows, T - t0);
    const Window xw = window(x, t0 * K, tn * K, dev);
    for (std::int64_t n0 = 0; n0 < N; n0 += n_rows) {
      const std::int64_t nn = std::min(n_rows, N - n0);
      const Window ww = window(w, n0 * K, nn * K, dev);
      const Window yw = window(y, t0 * N + n0, (tn - 1) * N + nn, dev);
      const params::MatmulParams p = matmul_params(xw, ww, yw, tn, K, nn, N, accumulate,
                                                   norm != nullptr ? &norm->options : nullptr, gw.first);
      if (norm != nullptr) {  // norm_fits_matvec: the subgroup variant, a workgroup per row
        ctx.recorder.dispatch(ctx.pipelines.get(vec), {xw.binding, ww.binding, gw.binding}, {yw.binding}, p,
                              {groups_for(nn, 1, dev)});
      } else if (tn <= kVecMaxT) {
        const Pipeline& pipeline = ctx.pipelines.get(vec);
        // The subgroup variant gives each workgroup a row.
        const std::int64_t rows = sg ? 1 : kVecRows;
        ctx.recorder.dispatch(pipeline, {xw.binding, ww.binding}, {yw.binding}, p, {groups_for(nn, rows, dev)});
      } else {
        ctx.recorder.dispatch(ctx.pipelines.get(tiled), {xw.binding, ww.binding}, {yw.binding}, p,
                              {groups_for(nn, kTile, dev, 0), groups_for(tn, kTile, dev, 1)});
      }
    }
  }
}

}  // namespace moeflux::backend::vk
