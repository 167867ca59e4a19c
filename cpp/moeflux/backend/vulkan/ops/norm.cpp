// rms_norm over the last axis, one workgroup per row (shaders/rms_norm.comp); weights in their
// stored dtype, the subgroup variant where the device has subgroup arithmetic; apply_norm_weight
// through the same shader (weight_only). rms_scale: another tensor scaled by x's 1 / rms.
#include <algorithm>

#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/backend/vulkan/ops/tensor_access.h"
#include "moeflux/backend/vulkan/vulkan_backend.h"
#include "moeflux/util/error.h"
#include "params/rms_norm.h"
#include "params/rms_scale.h"

namespace moeflux::backend::vk {
namespace {

constexpr std::int64_t kRmsScaleCols = 4;  // COLS of rms_scale.comp

}  // namespace

void VulkanBackend::rms_norm(const Tensor& x, const Tensor& w, const NormOptions& options, Tensor& out) {
  norm_rows(x, w, options, out, "rms_norm", true);
}

void VulkanBackend::apply_norm_weight(const Tensor& x, const Tensor& w, const NormOptions& options, Tensor& out) {
  norm_rows(x, w, options, out, "apply_norm_weight", false);
}

void VulkanBackend::norm_rows(const Tensor& x, const Tensor& w, const NormOptions& options, Tensor& out,
                              const char* op, bool normalize) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  cpu::check_rank(w, 1, op, "w");
  storage_of(w, ctx, op, "w");
  f32_storage_of(x, ctx, op, "x");
  f32_storage_of(out, ctx, op, "out");
  MF_CHECK(!w.quantized(), Unsupported, "[", op, "] a quantized norm weight; store norms as f32, f16 or bf16");
  const std::int64_t C = w.dim(0);
  MF_CHECK(x.rank() >= 1 && x.dim(-1) == C && C > 0, ShapeError, "[", op, "] x ", format::shape_string(x.shape()),
           " must end in the weight's length ", C);
  MF_CHECK(out.numel() == x.numel() && out.rank() >= 1 && out.dim(-1) == C, ShapeError, "[", op, "] out ",
           format::shape_string(out.shape()), " must match x ", format::shape_string(x.shape()));
  cpu::check_disjoint_or_same(x, out, op, "x");
  cpu::check_disjoint(w, out, op, "w");
  const std::int64_t R = x.numel() / C;
  if (R == 0) return;

  const Pipeline& pipeline = ctx.pipelines.get(variant("rms_norm", w.dtype(), dev.features().subgroup_arithmetic));
  const Window ww = whole(w, dev);
  const std::int64_t rows = rows_per_binding(C * 4, dev, op);
  for (std::int64_t r0 = 0; r0 < R; r0 += rows) {
    const std::int64_t n = std::min(rows, R - r0);
    const Window xw = window(x, r0 * C, n * C, dev);
    const Window ow = window(out, r0 * C, n * C, dev);
    const params::RmsNormParams p{xw.first, ww.first, ow.first, static_cast<std::uint32_t>(n),
                                  static_cast<std::uint32_t>(C), options.eps, options.zero_centered ? 1u : 0u,
                                  normalize ? 0u : 1u};
    ctx.recorder.dispatch(pipeline, {xw.binding, ww.binding}, {ow.binding}, p, {groups_for(n, 1, dev)});
  }
}

void VulkanBackend::rms_scale(const Tensor& x, float eps, const Tensor& y, Tensor& out) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  cpu::check_rank(x, 2, "rms_scale", "x");
  f32_storage_of(x, ctx, "rms_scale", "x");
  f32_storage_of(y, ctx, "rms_scale", "y");
  f32_storage_of(out, ctx, "rms_scale", "out");
  const std::int64_t R = x.dim(0), H = x.dim(1);
  MF_CHECK(y.rank() >= 1 && y.dim(0) == R && H > 0 && out.shape() == y.shape(), ShapeError, "[rms_scale] x ",
           format::shape_string(x.shape()), ", y ", format::shape_string(y.shape()), ", out ",
           format::shape_string(out.shape()), "; expected x [T, H], y and out [T, ...]");
  const std::int64_t C = R > 0 ? y.numel() / R : 0;
  cpu::check_disjoint_or_same(y, out, "rms_scale", "y");
  cpu::check_disjoint(x, out, "rms_scale", "x");
  if (R == 0 || C == 0) return;
  const Pipeline& pipeline = ctx.pipelines.get(dev.features().subgroup_arithmetic ? "rms_scale_f32_sg" : "rms_scale_f32");
  const std::int64_t rows = rows_per_binding(std::max(H, C) * 4, dev, "rms_scale");
  for (std::int64_t r0 = 0; r0 < R; r0 += rows) {
    const std::int64_t n = std::min(rows, R - r0);
    const Window xw = window(x, r0 * H, n * H, dev), yw = window(y, r0 * C, n * C, dev);
    const Window ow = window(out, r0 * C, n * C, dev);
    const params::RmsScaleParams p{xw.first, yw.first, ow.first, static_cast<std::uint32_t>(n),
                                   static_cast<std::uint32_t>(H), static_cast<std::uint32_t>(C), eps};
    const std::int64_t block = kRmsScaleCols * pipeline.spec.local_size;  // y's columns per workgroup
    ctx.recorder.dispatch(pipeline, {xw.binding, yw.binding}, {ow.binding}, p,
                          {groups_for(C, block, dev, 0), groups_for(n, 1, dev, 1)});
  }
}

}  // namespace moeflux::backend::vk
