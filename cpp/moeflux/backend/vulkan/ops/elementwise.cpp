// Elementwise ops: swiglu, add, sigmoid_mul (shaders/<op>.comp), float32 throughout. Inputs may
// alias the output exactly, as on the CPU; tensors larger than one binding go in pieces.
#include <algorithm>
#include <string_view>

#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/backend/vulkan/ops/tensor_access.h"
#include "moeflux/backend/vulkan/vulkan_backend.h"
#include "moeflux/util/error.h"
#include "params/add.h"
#include "params/sigmoid_mul.h"
#include "params/swiglu.h"

namespace moeflux::backend::vk {
namespace {

// out = op(a, b) over same-shaped tensors, for ops whose parameters are {a, b, out offsets, n}.
template <typename Params>
void binary(Context& ctx, std::string_view op, const Tensor& a, const Tensor& b, Tensor& out) {
  const Device& dev = ctx.device;
  f32_storage_of(a, ctx, op, "the first input");
  f32_storage_of(b, ctx, op, "the second input");
  f32_storage_of(out, ctx, op, "out");
  MF_CHECK(a.shape() == b.shape() && a.shape() == out.shape(), ShapeError, "[", op, "] inputs ",
           format::shape_string(a.shape()), " and ", format::shape_string(b.shape()), " and out ",
           format::shape_string(out.shape()), " must have the same shape");
  cpu::check_disjoint_or_same(a, out, op, "the first input");
  cpu::check_disjoint_or_same(b, out, op, "the second input");
  const std::int64_t n = out.numel();
  const Pipeline& pipeline = ctx.pipelines.get(std::string(op).append("_f32"));
  const std::int64_t piece = rows_per_binding(4, dev, op);
  for (std::int64_t i0 = 0; i0 < n; i0 += piece) {
    const std::int64_t count = std::min(piece, n - i0);
    const Window aw = window(a, i0, count, dev), bw = window(b, i0, count, dev), ow = window(out, i0, count, dev);
    const Params p{aw.first, bw.first, ow.first, static_cast<std::uint32_t>(count)};
    ctx.recorder.dispatch(pipeline, {aw.binding, bw.binding}, {ow.binding}, p,
                          {groups_for(count, pipeline.spec.local_size, dev)});
  }
}

}  // namespace

void VulkanBackend::swiglu(const Tensor& gate, const Tensor& up, Tensor& out) {
  binary<params::SwigluParams>(*context_, "swiglu", gate, up, out);
}

void VulkanBackend::add(const Tensor& a, const Tensor& b, Tensor& out) {
  binary<params::AddParams>(*context_, "add", a, b, out);
}

void VulkanBackend::sigmoid_mul(const Tensor& gate, const Tensor& x, Tensor& out) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  f32_storage_of(gate, ctx, "sigmoid_mul", "gate");
  f32_storage_of(x, ctx, "sigmoid_mul", "x");
  f32_storage_of(out, ctx, "sigmoid_mul", "out");
  // Rows are axis 0; the rest of each tensor is one row of G (gate) or C (x, out) elements.
  MF_CHECK(gate.rank() >= 1 && x.rank() >= 1 && gate.dim(0) == x.dim(0) && x.shape() == out.shape(), ShapeError,
           "[sigmoid_mul] gate ", format::shape_string(gate.shape()), ", x ", format::shape_string(x.shape()),
           " and out ", format::shape_string(out.shape()), "; expected gate [T, G], x and out [T, C]");
  const std::int64_t T = x.dim(0);
  const std::int64_t C = T == 0 ? 0 : x.numel() / T;
  const std::int64_t G = T == 0 ? 0 : gate.numel() / T;
  MF_CHECK(T == 0 || (G > 0 && C % G == 0), ShapeError, "[sigmoid_mul] gate ", format::shape_string(gate.shape()),
           " must split the ", C, " columns of x into equal groups");
  cpu::check_disjoint_or_same(x, out, "sigmoid_mul", "x");
  cpu::check_disjoint(gate, out, "sigmoid_mul", "gate");
  if (T == 0 || C == 0) return;
  const Pipeline& pipeline = ctx.pipelines.get("sigmoid_mul_f32");
  const std::int64_t rows = rows_per_binding(C * 4, dev, "sigmoid_mul");
  for (std::int64_t t0 = 0; t0 < T; t0 += rows) {
    const std::int64_t tn = std::min(rows, T - t0);
    const Window gw = window(gate, t0 * G, tn * G, dev), xw = window(x, t0 * C, tn * C, dev);
    const Window ow = window(out, t0 * C, tn * C, dev);
    const params::SigmoidMulParams p{gw.first, xw.first, ow.first, static_cast<std::uint32_t>(tn),
                                     static_cast<std::uint32_t>(G), static_cast<std::uint32_t>(C)};
    ctx.recorder.dispatch(pipeline, {gw.binding, xw.binding}, {ow.binding}, p,
                          {groups_for(tn * C, pipeline.spec.local_size, dev)});
  }
}

}  // namespace moeflux::backend::vk
