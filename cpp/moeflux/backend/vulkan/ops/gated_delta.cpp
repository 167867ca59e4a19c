// The Gated DeltaNet ops (shaders/causal_conv1d.comp, delta_rule_gates.comp, gated_delta_rule.comp
// and gated_delta_chunk*.comp, gated_rms_norm.comp): the same checks and messages as the CPU
// backend, tensors cut into row windows; the conv and delta-rule states carry across windows (the
// recorder orders the dispatches).
#include <algorithm>
#include <cmath>
#include <utility>

#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/backend/op_checks.h"
#include "moeflux/backend/vulkan/ops/tensor_access.h"
#include "moeflux/backend/vulkan/vulkan_backend.h"
#include "moeflux/util/error.h"
#include "params/causal_conv1d.h"
#include "params/delta_rule_gates.h"
#include "params/gated_delta_chunk.h"
#include "params/gated_delta_rule.h"
#include "params/gated_rms_norm.h"

namespace moeflux::backend::vk {

namespace {

constexpr std::int64_t kMaxConvKernel = 16;  // causal_conv1d.comp keeps the window in registers
constexpr std::int64_t kMaxKeyDim = 256;     // gated_delta_rule.comp's shared q and k rows
constexpr std::int64_t kMaxChunk = 64;       // gated_delta_chunk*.comp's per-chunk arrays

std::uint32_t u32(std::int64_t v) { return static_cast<std::uint32_t>(v); }

}  // namespace

void VulkanBackend::causal_conv1d(const Tensor& x, const Tensor& weight, Tensor& state, Tensor& out) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  const char* op = "causal_conv1d";
  cpu::check_rank(x, 2, op, "x");
  cpu::check_rank(weight, 2, op, "weight");
  cpu::check_rank(state, 2, op, "state");
  f32_storage_of(x, ctx, op, "x");
  storage_of(weight, ctx, op, "weight");
  f32_storage_of(state, ctx, op, "state");
  f32_storage_of(out, ctx, op, "out");
  MF_CHECK(!weight.quantized(), Unsupported, "[causal_conv1d] a quantized conv weight; store it as f32, f16 or bf16");
  const std::int64_t T = x.dim(0), C = x.dim(1), K = weight.dim(1);
  MF_CHECK(weight.dim(0) == C && K >= 1, ShapeError, "[causal_conv1d] weight ", format::shape_string(weight.shape()),
           " must be [C, K] with C = ", C, " (x's channels)");
  MF_CHECK(state.dim(0) == K - 1 && state.dim(1) == C, ShapeError, "[causal_conv1d] state ",
           format::shape_string(state.shape()), " must be [K-1, C] = [", K - 1, ", ", C, "]");
  MF_CHECK(out.shape() == x.shape(), ShapeError, "[causal_conv1d] out ", format::shape_string(out.shape()),
           " must match x ", format::shape_string(x.shape()));
  MF_CHECK(K <= kMaxConvKernel, Unsupported, "[causal_conv1d] a kernel of width ", K, " on Vulkan; at most ",
           kMaxConvKernel);
  cpu::check_disjoint_or_same(x, out, op, "x");
  cpu::check_disjoint(state, out, op, "state");
  cpu::check_disjoint(state, x, op, "state");
  if (T == 0 || C == 0) return;

  const Pipeline& pipeline = ctx.pipelines.get(variant(op, weight.dtype()));
  const Window ww = whole(weight, dev);
  const Window sw = K > 1 ? whole(state, dev) : window(out, 0, C, dev);  // K = 1: no state to bind
  const std::int64_t rows = rows_per_binding(C * 4, dev, op);
  for (std::int64_t t0 = 0; t0 < T; t0 += rows) {
    const std::int64_t n = std::min(rows, T - t0);
    const Window xw = window(x, t0 * C, n * C, dev), ow = window(out, t0 * C, n * C, dev);
    const params::CausalConv1dParams p{xw.first, ww.first, sw.first, ow.first, u32(n), u32(C), u32(K)};
    ctx.recorder.dispatch(pipeline, {xw.binding, ww.binding}, {sw.binding, ow.binding}, p,
                          {groups_for(C, pipeline.spec.local_size, dev)});
  }
}

void VulkanBackend::delta_rule_gates(const Tensor& a, const Tensor& b, const Tensor& a_log, const Tensor& dt_bias,
                                     Tensor& g, Tensor& beta) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  const char* op = "delta_rule_gates";
  for (const auto& [t, what] : {std::pair{&a, "a"}, {&b, "b"}, {&g, "g"}, {&beta, "beta"}}) f32_storage_of(*t, ctx, op, what);
  storage_of(a_log, ctx, op, "a_log");
  storage_of(dt_bias, ctx, op, "dt_bias");
  check_delta_rule_gates(a, b, a_log, dt_bias, g, beta);
  const std::int64_t T = a.dim(0), HV = a.dim(1);
  MF_CHECK(a_log.dtype() == dt_bias.dtype() && !a_log.quantized(), Unsupported,
           "[delta_rule_gates] a_log and dt_bias must be stored in one float dtype on Vulkan");
  if (T == 0 || HV == 0) return;

  const Pipeline& pipeline = ctx.pipelines.get(variant(op, a_log.dtype()));
  const Window lw = whole(a_log, dev), dw = whole(dt_bias, dev);
  const std::int64_t rows = rows_per_binding(HV * 4, dev, op);
  for (std::int64_t t0 = 0; t0 < T; t0 += rows) {
    const std::int64_t n = std::min(rows, T - t0);
    const Window aw = window(a, t0 * HV, n * HV, dev), bw = window(b, t0 * HV, n * HV, dev);
    const Window gw = window(g, t0 * HV, n * HV, dev), betaw = window(beta, t0 * HV, n * HV, dev);
    const params::DeltaRuleGatesParams p{aw.first, bw.first, lw.first, dw.first, gw.first, betaw.first, u32(n), u32(HV)};
    ctx.recorder.dispatch(pipeline, {aw.binding, bw.binding, lw.binding, dw.binding}, {gw.binding, betaw.binding}, p,
                          {groups_for(n * HV, pipeline.spec.local_size, dev)});
  }
}

void VulkanBackend::gated_delta_rule(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                                     const Tensor& beta, const DeltaRuleOptions& options, Tensor& state, Tensor& out) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  const char* op = "gated_delta_rule";
  cpu::check_rank(q, 3, op, "q");
  cpu::check_rank(v, 3, op, "v");
  cpu::check_rank(g, 2, op, "g");
  cpu::check_rank(state, 3, op, "state");
  for (const auto& [t, what] : {std::pair{&q, "q"}, {&k, "k"}, {&v, "v"}, {&g, "g"}, {&beta, "beta"}})
    f32_storage_of(*t, ctx, op, what);
  f32_storage_of(state, ctx, op, "state");
  f32_storage_of(out, ctx, op, "out");
  const std::int64_t T = q.dim(0), HK = q.dim(1), dk = q.dim(2), HV = v.dim(1), dv = v.dim(2);
  MF_CHECK(k.shape() == q.shape(), ShapeError, "[gated_delta_rule] k ", format::shape_string(k.shape()),
           " must match q ", format::shape_string(q.shape()), " [T, HK, dk]");
  MF_CHECK(v.dim(0) == T && HK > 0 && HV % HK == 0 && HV > 0, ShapeError, "[gated_delta_rule] v ",
           format::shape_string(v.shape()), " must be [T, HV, dv] with T = ", T, " and HV a multiple of HK = ", HK);
  const Shape heads{T, HV}, state_shape{HV, dk, dv};
  MF_CHECK(g.shape() == heads && beta.shape() == heads, ShapeError, "[gated_delta_rule] g ",
           format::shape_string(g.shape()), " and beta ", format::shape_string(beta.shape()), " must be [T, HV] = [", T,
           ", ", HV, "]");
  MF_CHECK(state.shape() == state_shape, ShapeError, "[gated_delta_rule] state ", format::shape_string(state.shape()),
           " must be [HV, dk, dv] = [", HV, ", ", dk, ", ", dv, "]");
  MF_CHECK(out.shape() == v.shape(), ShapeError, "[gated_delta_rule] out ", format::shape_string(out.shape()),
           " must match v ", format::shape_string(v.shape()));
  MF_CHECK(options.chunk_size >= 1, ShapeError, "[gated_delta_rule] chunk_size ", options.chunk_size,
           " must be at least 1");
  MF_CHECK(dk <= kMaxKeyDim, Unsupported, "[gated_delta_rule] key heads of ", dk, " on Vulkan; at most ", kMaxKeyDim);
  for (const auto& [t, what] : {std::pair{&q, "q"}, {&k, "k"}, {&v, "v"}, {&g, "g"}, {&beta, "beta"}}) {
    cpu::check_disjoint(*t, out, op, what);
    cpu::check_disjoint(*t, state, op, what);
  }
  cpu::check_disjoint(state, out, op, "state");
  if (T == 0 || dv == 0) return;

  const float scale = 1.0f / std::sqrt(static_cast<float>(dk));
  if (T > 1 && options.chunk_size > 1 && gated_delta_chunked(q, k, v, g, beta, options, state, out, scale)) return;

  // The per-token recurrence: tokens go in row windows, the state carried between, and the state
  // in windows of whole heads.
  const bool sg = dev.features().subgroup_arithmetic;
  const Pipeline& pipeline = ctx.pipelines.get(sg ? "gated_delta_rule_f32_sg" : "gated_delta_rule_f32");
  const std::int64_t heads_per = rows_per_binding(dk * dv * 4, dev, op);
  const std::int64_t rows = std::min({rows_per_binding(HK * dk * 4, dev, op), rows_per_binding(HV * dv * 4, dev, op),
                                      rows_per_binding(HV * 4, dev, op)});
  for (std::int64_t t0 = 0; t0 < T; t0 += rows) {
    const std::int64_t n = std::min(rows, T - t0);
    const Window qw = window(q, t0 * HK * dk, n * HK * dk, dev), kw = window(k, t0 * HK * dk, n * HK * dk, dev);
    const Window vw = window(v, t0 * HV * dv, n * HV * dv, dev), ow = window(out, t0 * HV * dv, n * HV * dv, dev);
    const Window gw = window(g, t0 * HV, n * HV, dev), bw = window(beta, t0 * HV, n * HV, dev);
    for (std::int64_t h0 = 0; h0 < HV; h0 += heads_per) {
      const std::int64_t nh = std::min(heads_per, HV - h0);
      const Window sw = window(state, h0 * dk * dv, nh * dk * dv, dev);
      const params::GatedDeltaRuleParams p{qw.first, kw.first, vw.first, gw.first, bw.first, sw.first,
                                           ow.first, u32(n),   u32(HK),  u32(HV),  u32(dk),  u32(dv),
                                           scale,    u32(h0),  u32(nh)};
      ctx.recorder.dispatch(pipeline, {qw.binding, kw.binding, vw.binding, gw.binding, bw.binding},
                            {sw.binding, ow.binding}, p, {groups_for(nh, 1, dev)});
    }
  }
}

bool VulkanBackend::gated_delta_chunked(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                                        const Tensor& beta, const DeltaRuleOptions& options, Tensor& state, Tensor& out,
                                        float scale) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  const char* op = "gated_delta_rule";
  const std::int64_t T = q.dim(0), HK = q.dim(1), dk = q.dim(2), HV = v.dim(1), dv = v.dim(2);
  const std::int64_t C = std::min(options.chunk_size, T), n_chunks = (T + C - 1) / C;
  MF_CHECK(C <= kMaxChunk, Unsupported, "[gated_delta_rule] chunks of ", options.chunk_size, " tokens on Vulkan; at most ",
           kMaxChunk);
  // One dispatch pair covers the call: everything it binds must fit one binding, else the caller
  // runs the recurrence (the same numbers up to rounding; only tiny binding limits get there).
  const std::int64_t ab_size = HV * n_chunks * 2 * C * C, r_size = T * HV * 2;
  const auto fits = [&](std::int64_t elements) {
    return elements * 4 + static_cast<std::int64_t>(dev.limits().storage_alignment) + 4 <=
           static_cast<std::int64_t>(dev.limits().max_storage_range);
  };
  if (!fits(ab_size + r_size) || !fits(T * HK * dk) || !fits(T * HV * dv) || !fits(dk * dv)) return false;

  Tensor scratch = empty({ab_size + r_size});  // ab, then r
  const Window qw = window(q, 0, T * HK * dk, dev), kw = window(k, 0, T * HK * dk, dev);
  const Window vw = window(v, 0, T * HV * dv, dev), ow = window(out, 0, T * HV * dv, dev);
  const Window gw = window(g, 0, T * HV, dev), bw = window(beta, 0, T * HV, dev);
  const Window xw = window(scratch, 0, ab_size + r_size, dev);
  params::GatedDeltaChunkParams p{qw.first, kw.first, vw.first, gw.first, bw.first, xw.first, u32(xw.first + ab_size),
                                  0,        ow.first, u32(T),   u32(HK),  u32(HV),  u32(dk),  u32(dv),
                                  u32(C),   scale,    0,        u32(HV)};
  const Pipeline& prep = ctx.pipelines.get("gated_delta_chunk_prep_f32");
  ctx.recorder.dispatch(prep, {qw.binding, kw.binding, gw.binding, bw.binding}, {xw.binding}, p,
                        {groups_for(n_chunks * HV, 1, dev)});
  const Pipeline& chunk = ctx.pipelines.get("gated_delta_chunk_f32");
  const std::int64_t heads_per = rows_per_binding(dk * dv * 4, dev, op);
  for (std::int64_t h0 = 0; h0 < HV; h0 += heads_per) {
    const std::int64_t nh = std::min(heads_per, HV - h0);
    const Window sw = window(state, h0 * dk * dv, nh * dk * dv, dev);
    p.state_offset = sw.first;
    p.head_first = u32(h0);
    p.n_heads = u32(nh);
    ctx.recorder.dispatch(chunk, {qw.binding, kw.binding, vw.binding, gw.binding, bw.binding, xw.binding},
                          {sw.binding, ow.binding}, p, {groups_for(nh * dv, chunk.spec.local_size, dev)});
  }
  return true;
}

void VulkanBackend::gated_rms_norm(const Tensor& x, const Tensor& z, const Tensor& weight, float eps, Tensor& out) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  const char* op = "gated_rms_norm";
  cpu::check_rank(weight, 1, op, "weight");
  storage_of(weight, ctx, op, "weight");
  f32_storage_of(x, ctx, op, "x");
  f32_storage_of(z, ctx, op, "z");
  f32_storage_of(out, ctx, op, "out");
  MF_CHECK(!weight.quantized(), Unsupported, "[gated_rms_norm] a quantized norm weight; store norms as f32, f16 or bf16");
  const std::int64_t C = weight.dim(0);
  MF_CHECK(x.rank() >= 1 && x.dim(-1) == C && C > 0, ShapeError, "[gated_rms_norm] x ", format::shape_string(x.shape()),
           " must end in the weight's length ", C);
  MF_CHECK(z.shape() == x.shape() && out.shape() == x.shape(), ShapeError, "[gated_rms_norm] z ",
           format::shape_string(z.shape()), " and out ", format::shape_string(out.shape()), " must match x ",
           format::shape_string(x.shape()));
  cpu::check_disjoint_or_same(x, out, op, "x");
  cpu::check_disjoint_or_same(z, out, op, "z");
  cpu::check_disjoint(weight, out, op, "weight");
  const std::int64_t R = x.numel() / C;
  if (R == 0) return;

  const Pipeline& pipeline = ctx.pipelines.get(variant(op, weight.dtype(), dev.features().subgroup_arithmetic));
  const Window ww = whole(weight, dev);
  const std::int64_t rows = rows_per_binding(C * 4, dev, op);
  for (std::int64_t r0 = 0; r0 < R; r0 += rows) {
    const std::int64_t n = std::min(rows, R - r0);
    const Window xw = window(x, r0 * C, n * C, dev), zw = window(z, r0 * C, n * C, dev);
    const Window ow = window(out, r0 * C, n * C, dev);
    const params::GatedRmsNormParams p{xw.first, zw.first, ww.first, ow.first, u32(n), u32(C), eps};
    ctx.recorder.dispatch(pipeline, {xw.binding, zw.binding, ww.binding}, {ow.binding}, p, {groups_for(n, 1, dev)});
  }
}

}  // namespace moeflux::backend::vk
