// moe_experts: its checks, then few tokens take ops/moe_pairs.cpp, many ops/moe_grouped.cpp; what
// neither serves (experts stored unlike each other, buffers beyond one binding) is computed here
// as the CPU does it: per listed expert, ascending, its tokens' rows gathered, then
// down(silu(gate x) * up x), then out[token] += y * weight (moe_accumulate, one dispatch per expert),
// so batched calls give the bits of one call. Expert weights come from the device tier's slots,
// keyed by (layer, expert) (device_expert_cache.cpp); unnamed experts are uploaded per call.
#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <span>
#include <vector>

#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/backend/cpu/weight.h"
#include "moeflux/backend/vulkan/ops/tensor_access.h"
#include "moeflux/backend/vulkan/vulkan_backend.h"
#include "moeflux/util/error.h"
#include "params/fill.h"
#include "params/moe_accumulate.h"

namespace moeflux::backend::vk {
namespace {

// The rows one expert computes: token indices (ascending) and their routing weights.
struct ExpertRows {
  std::vector<std::int32_t> tokens;
  std::vector<float> weights;
};

void check_block(const format::TensorView& view, const Shape& expected, std::int32_t expert, const char* role,
                 bool on_device) {
  MF_CHECK(view.shape == expected, ShapeError, "[moe_experts] expert ", expert, " ", role, " '", view.name,
           "' has shape ", format::shape_string(view.shape), "; expected ", format::shape_string(expected));
  if (!on_device) cpu::weight_ref(view, "moe_experts", util::concat("expert ", expert, " ", role));  // bytes, quantization
}

// out[tokens[r]] += y[r] * weights[r] for one expert, in runs of distinct tokens (a token routed
// twice to one expert gets its second row in a later dispatch, as the CPU adds it later).
void accumulate(Context& ctx, const Tensor& y, const ExpertRows& rows, Tensor& out) {
  const Device& dev = ctx.device;
  const Pipeline& pipeline = ctx.pipelines.get("moe_accumulate_f32");
  const std::span<const std::int32_t> tokens = rows.tokens;
  const auto M = static_cast<std::int64_t>(tokens.size());
  const std::int64_t T = out.dim(0), H = out.dim(1);
  std::vector<std::uint32_t> route;
  for (std::size_t r = 0; r < tokens.size(); ++r) {
    route.push_back(static_cast<std::uint32_t>(tokens[r]));
    route.push_back(std::bit_cast<std::uint32_t>(rows.weights[r]));
  }
  const Binding route_binding = ctx.recorder.stage(std::as_bytes(std::span(route)));
  const std::int64_t row_block = rows_per_binding(H * 4, dev, "moe_experts");
  auto token = [&](std::int64_t r) -> std::int64_t { return tokens[static_cast<std::size_t>(r)]; };
  for (std::int64_t run = 0; run < M;) {
    std::int64_t end = run + 1;
    while (end < M && token(end) > token(end - 1)) ++end;
    for (std::int64_t r0 = run; r0 < end; r0 += row_block) {
      const std::int64_t rn = std::min(row_block, end - r0);
      const Window yw = window(y, r0 * H, rn * H, dev);
      // Only the windows of out that hold these rows' tokens (ascending within a run).
      for (std::int64_t o0 = token(r0) / row_block * row_block; o0 <= token(r0 + rn - 1); o0 += row_block) {
        const std::int64_t on = std::min(row_block, T - o0);
        const Window ow = window(out, o0 * H, on * H, dev);
        const params::MoeAccumulateParams p{yw.first, static_cast<std::uint32_t>(r0), ow.first,
                                            static_cast<std::uint32_t>(rn), static_cast<std::uint32_t>(H),
                                            static_cast<std::uint32_t>(o0), static_cast<std::uint32_t>(on)};
        ctx.recorder.dispatch(pipeline, {yw.binding, route_binding}, {ow.binding}, p,
                              {groups_for(H, pipeline.spec.local_size, dev, 0), groups_for(rn, 1, dev, 1)});
      }
    }
    run = end;
  }
}

}  // namespace

void VulkanBackend::fill(Tensor& out, float value) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  const Pipeline& pipeline = ctx.pipelines.get("fill_f32");
  const std::int64_t n = out.numel(), piece = rows_per_binding(4, dev, "fill");
  for (std::int64_t i0 = 0; i0 < n; i0 += piece) {
    const std::int64_t count = std::min(piece, n - i0);
    const Window w = window(out, i0, count, dev);
    const params::FillParams p{w.first, static_cast<std::uint32_t>(count), value};
    ctx.recorder.dispatch(pipeline, {}, {w.binding}, p, {groups_for(count, pipeline.spec.local_size, dev)});
  }
}

void VulkanBackend::moe_experts(const Tensor& x, const MoeRouting& routing, std::span<const ExpertWeights> given,
                                Tensor& out, bool accumulate_into) {
  Context& ctx = *context_;
  close_expert_uploads(given);
  const std::vector<ExpertWeights> resolved = held_expert_views(given);
  const std::span<const ExpertWeights> experts = resolved;
  cpu::check_rank(x, 2, "moe_experts", "x");
  f32_storage_of(x, ctx, "moe_experts", "x");
  f32_storage_of(out, ctx, "moe_experts", "out");
  MF_CHECK(out.shape() == x.shape(), ShapeError, "[moe_experts] out ", format::shape_string(out.shape()),
           " must match x ", format::shape_string(x.shape()));
  const std::int64_t T = x.dim(0), H = x.dim(1);
  const auto slots = static_cast<std::size_t>(T * routing.k);
  MF_CHECK(routing.n_tokens == T && routing.k >= 1 && routing.experts.size() == slots &&
               routing.weights.size() == slots,
           ShapeError, "[moe_experts] routing of ", routing.n_tokens, " tokens with k = ", routing.k, " (",
           routing.experts.size(), " experts, ", routing.weights.size(), " weights) does not fit x ",
           format::shape_string(x.shape()), "; expected [T, k] of each");
  MF_CHECK(experts.size() == routing.unique.size(), ShapeError, "[moe_experts] ", experts.size(),
           " expert weight sets for ", routing.unique.size(), " unique experts; pass one per entry");
  for (std::size_t e = 1; e < routing.unique.size(); ++e) {
    MF_CHECK(routing.unique[e - 1] < routing.unique[e], ShapeError,
             "[moe_experts] routing.unique must be strictly ascending; found ", routing.unique[e - 1], " before ",
             routing.unique[e]);
  }
  // Each expert's rows in one pass over the pairs (routing.unique is ascending).
  std::vector<ExpertRows> rows(experts.size());
  for (std::size_t s = 0; s < slots; ++s) {
    const auto at = std::lower_bound(routing.unique.begin(), routing.unique.end(), routing.experts[s]);
    if (at == routing.unique.end() || *at != routing.experts[s]) continue;
    ExpertRows& r = rows[static_cast<std::size_t>(at - routing.unique.begin())];
    r.tokens.push_back(static_cast<std::int32_t>(s / static_cast<std::size_t>(routing.k)));
    r.weights.push_back(routing.weights[s]);
  }
  std::int64_t max_rows = 0, max_I = 0;
  for (std::size_t e = 0; e < experts.size(); ++e) {  // every expert checked before any is computed
    const std::int32_t id = routing.unique[e];
    MF_CHECK(experts[e].gate.shape.size() == 2, ShapeError, "[moe_experts] expert ", id, " gate has shape ",
             format::shape_string(experts[e].gate.shape), "; expected [I, ", H, "]");
    const std::int64_t I = experts[e].gate.shape[0];
    check_block(experts[e].gate, {I, H}, id, "gate", experts[e].on_device);
    check_block(experts[e].up, {I, H}, id, "up", experts[e].on_device);
    check_block(experts[e].down, {H, I}, id, "down", experts[e].on_device);
    if (rows[e].tokens.empty()) continue;
    max_rows = std::max(max_rows, static_cast<std::int64_t>(rows[e].tokens.size()));
    max_I = std::max(max_I, I);
  }
  cpu::check_disjoint(x, out, "moe_experts", "x");

  if (max_rows > 0 && H > 0 && pair_path_fits(routing, experts)) {  // few tokens: two dispatches per batch
    moe_experts_pairs(x, routing, experts, out, accumulate_into);
    return;
  }
  if (max_rows > 0 && H > 0 && experts_alike(experts) &&  // many tokens: three dispatches per batch
      moe_experts_grouped(x, routing, experts, out, accumulate_into))
    return;
  // Experts stored unlike each other, or buffers beyond one binding: expert by expert.
  if (!accumulate_into && out.numel() > 0) fill(out, 0.0f);
  if (max_rows == 0 || H == 0) return;
  Tensor xs_all = empty({max_rows, H}), y_all = empty({max_rows, H});
  Tensor gate_all = empty({max_rows, max_I}), up_all = empty({max_rows, max_I});
  // Batches no larger than the device tier's pool, so every expert of a batch holds its slot.
  const std::size_t batch = expert_batch(experts);
  for (std::size_t b0 = 0; b0 < experts.size(); b0 += batch) {
    std::vector<ExpertWeights> used;  // the batch's experts with rows: only they need weights
    std::vector<std::size_t> index;
    for (std::size_t e = b0; e < std::min(experts.size(), b0 + batch); ++e) {
      if (rows[e].tokens.empty()) continue;
      used.push_back(experts[e]);
      index.push_back(e);
    }
    const std::vector<std::array<Tensor, 3>> weights = expert_tensors(used);
    for (std::size_t j = 0; j < used.size(); ++j) {
      const std::size_t e = index[j];
      const auto M = static_cast<std::int64_t>(rows[e].tokens.size());
      const std::int64_t I = experts[e].gate.shape[0];
      const auto& [gate_w, up_w, down_w] = weights[j];
      Tensor xs = xs_all.rows(0, M), y = y_all.rows(0, M);
      Tensor gate = gate_all.view({max_rows * max_I}).rows(0, M * I).view({M, I});
      Tensor up = up_all.view({max_rows * max_I}).rows(0, M * I).view({M, I});
      embedding(x, rows[e].tokens, xs);  // gathers the rows of x
      matmul(xs, gate_w, gate);
      matmul(xs, up_w, up);
      swiglu(gate, up, gate);
      matmul(gate, down_w, y);
      accumulate(ctx, y, rows[e], out);
    }
  }
}

}  // namespace moeflux::backend::vk
