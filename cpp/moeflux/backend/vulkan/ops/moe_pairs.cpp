// The routed experts of few tokens (decode): softmax top-k on the device (moe_route, or in the
// router product's last workgroup: router), then two dispatches for a whole MoE layer, whatever
// the number of experts: moe_gate_up over every (token, slot) pair and moe_down, which sums each
// token's experts in ascending order into out.
// The kernels reach each expert's blocks through an expert table of device addresses: the device
// tier's own (moe_experts_routed: no host sync) or one staged per call (moe_experts), so both paths
// give the same bits.
#include <algorithm>
#include <bit>
#include <vector>

#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/backend/routing.h"
#include "moeflux/backend/vulkan/device_expert_cache.h"
#include "moeflux/backend/vulkan/ops/expert_table.h"
#include "moeflux/backend/vulkan/ops/matmul_params.h"
#include "moeflux/backend/vulkan/vulkan_backend.h"
#include "moeflux/util/error.h"
#include "params/moe_pairs.h"
#include "params/moe_route.h"

namespace moeflux::backend::vk {
namespace {

constexpr std::int64_t kPairMaxTokens = 8;  // more tokens take the per-expert matrix path (moe.cpp)
constexpr std::int64_t kMaxK = 64;          // MAX_K of moe_route.comp and moe_down.comp
constexpr std::int64_t kGateUpTeamRows = 2;  // TEAM_ROWS of moe_gate_up.comp, quantized
constexpr std::int64_t kRouteMaxExperts = 4096;  // MAX_E of moe_route.comp
constexpr std::int64_t kRouteLaneValues = 16;    // LANE_VALUES of common/route_topk.glsl

// Whether common/route_topk.glsl's subgroup path routes E experts' top k: the logits fit the
// lanes' slots and each of the k choices has a lane.
bool route_fits_subgroup(const DeviceFeatures& f, std::int64_t E, std::int64_t k) {
  const std::int64_t S = f.subgroup_size;
  return f.subgroup_arithmetic && S > 0 && E <= kRouteLaneValues * S && k <= S;
}

}  // namespace

bool VulkanBackend::folds_input_norm(std::int64_t n_tokens) const {
  return n_tokens >= 1 && n_tokens <= kPairMaxTokens;
}

void VulkanBackend::check_folded_norm(const FoldedNorm& next, const Tensor& out) const {
  const Context& ctx = *context_;
  const std::int64_t H = out.dim(1);
  storage_of(next.weight, ctx, "moe_experts_routed", "the folded norm's weight");
  f32_storage_of(next.scaled, ctx, "moe_experts_routed", "the folded norm's scaled");
  MF_CHECK(next.weight.rank() == 1 && next.weight.dim(0) == H && !next.weight.quantized() &&
               next.scaled.shape() == out.shape(),
           ShapeError, "[moe_experts_routed] the folded norm's weight ", format::shape_string(next.weight.shape()),
           " and scaled ", format::shape_string(next.scaled.shape()), " for out ", format::shape_string(out.shape()),
           "; expected a float weight [H] and scaled like out");
  cpu::check_disjoint(next.scaled, out, "moe_experts_routed", "the folded norm's scaled");
}

bool VulkanBackend::experts_alike(std::span<const ExpertWeights> experts) const {
  if (experts.empty()) return false;
  auto form_of = [&](const ExpertWeights& w) {
    ExpertForms f;
    f.role = {weight_form(w.gate, "moe_experts"), weight_form(w.up, "moe_experts"), weight_form(w.down, "moe_experts")};
    f.gate_shape = w.gate.shape;
    f.down_shape = w.down.shape;
    return f;
  };
  const ExpertForms first = form_of(experts[0]);
  if (!pair_kernels_fit(first)) return false;
  return std::all_of(experts.begin(), experts.end(), [&](const ExpertWeights& w) {
    const ExpertForms f = form_of(w);
    return f.gate_shape == first.gate_shape && f.down_shape == first.down_shape &&
           stored_alike(f.role[0], first.role[0]) && stored_alike(f.role[1], first.role[1]) &&
           stored_alike(f.role[2], first.role[2]);
  });
}

bool VulkanBackend::pair_path_fits(const MoeRouting& routing, std::span<const ExpertWeights> experts) const {
  return routing.n_tokens <= kPairMaxTokens && routing.k <= kMaxK && experts_alike(experts);
}

bool VulkanBackend::stored_alike(const WeightForm& a, const WeightForm& b) {
  return a.dtype == b.dtype && a.quant.bits == b.quant.bits && a.quant.group_size == b.quant.group_size &&
         a.quant.scale_dtype == b.quant.scale_dtype;
}

bool VulkanBackend::pair_kernels_fit(const ExpertForms& forms) {
  return stored_alike(forms.role[0], forms.role[1]) && forms.gate_shape.size() == 2 && forms.down_shape.size() == 2 &&
         forms.down_shape[1] == forms.gate_shape[0];
}

void VulkanBackend::route_softmax_topk(const Tensor& logits, const RouteOptions& options, Tensor& routing) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  f32_storage_of(logits, ctx, "route_softmax_topk", "logits");
  f32_storage_of(routing, ctx, "route_softmax_topk", "routing");
  MF_CHECK(logits.rank() == 2 && routing.rank() == 2 && routing.dim(0) == logits.dim(0) &&
               routing.dim(1) == 2 * static_cast<std::int64_t>(options.k) && options.k >= 1 && options.k <= logits.dim(1),
           ShapeError, "[route_softmax_topk] logits ", format::shape_string(logits.shape()), ", routing ",
           format::shape_string(routing.shape()), ", k = ", options.k, "; expected [T, E], [T, 2k], 1 <= k <= E");
  const std::int64_t T = logits.dim(0), E = logits.dim(1);
  if (E > kRouteMaxExperts || options.k > kMaxK) {  // beyond the shader's shared arrays: on the host
    Backend::route_softmax_topk(logits, options, routing);
    return;
  }
  if (T == 0) return;
  const bool sg = dev.features().subgroup_arithmetic;
  const Pipeline& pipeline = ctx.pipelines.get(sg ? "moe_route_f32_sg" : "moe_route_f32");
  // The shader's subgroup path (the same test) routes a token per subgroup, else one per workgroup.
  const std::int64_t subgroup = dev.features().subgroup_size;
  const bool per_subgroup = route_fits_subgroup(dev.features(), E, options.k);
  const std::int64_t per_group = per_subgroup ? std::max<std::int64_t>(1, pipeline.spec.local_size / subgroup) : 1;
  const Window lw = whole(logits, dev), rw = whole(routing, dev);
  const params::MoeRouteParams p{lw.first, rw.first, static_cast<std::uint32_t>(T), static_cast<std::uint32_t>(E),
                                 static_cast<std::uint32_t>(options.k), options.normalize ? 1u : 0u};
  ctx.recorder.dispatch(pipeline, {lw.binding}, {rw.binding}, p, {groups_for(T, per_group, dev)});
}

void VulkanBackend::router(const Tensor& x, const Tensor& norm_weight, const NormOptions& norm, const Tensor& router,
                           const RouteOptions& options, Tensor& logits, Tensor& routing, Tensor& normed) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  const std::int64_t T = x.rank() == 2 ? x.dim(0) : 0, E = router.rank() == 2 ? router.dim(0) : 0;
  // The router's last workgroup routes where moe_route's subgroup path would (the same bits): a
  // float router of few rows that norm_matmul folds the norm into, in one binding.
  const bool fused = T >= 1 && T <= kPairMaxTokens && !router.quantized() && norm_fits_matvec(T, router, norm_weight) &&
                     E <= kNormFoldRows && route_fits_subgroup(dev.features(), E, options.k) &&
                     options.k >= 1 && options.k <= E &&
                     E * x.dim(1) * static_cast<std::int64_t>(element_bytes(router.dtype())) <= window_bytes(dev) &&
                     logits.numel() * 4 <= window_bytes(dev);
  if (!fused) return Backend::router(x, norm_weight, norm, router, options, logits, routing, normed);
  const Tensor ws[] = {router};
  Tensor ys[] = {logits};
  check_norm_matmul(x, norm_weight, ws, ys);
  f32_storage_of(routing, ctx, "router", "routing");
  MF_CHECK(routing.rank() == 2 && routing.dim(0) == T && routing.dim(1) == 2 * static_cast<std::int64_t>(options.k),
           ShapeError, "[router] routing ", format::shape_string(routing.shape()), " for ", T, " tokens and k = ",
           options.k, "; expected [T, 2k]");
  cpu::check_disjoint(logits, routing, "router", "logits");
  rms_norm(x, norm_weight, norm, normed);  // reads only x, like the product: no barrier between them
  const std::int64_t H = x.dim(1);
  const Window xw = whole(x, dev), ww = whole(router, dev), gw = whole(norm_weight, dev), yw = whole(logits, dev);
  const Window rw = whole(routing, dev), cw = whole(zeroed_counters(route_counter_, 1), dev);
  params::MatmulParams p = matmul_params(xw, ww, yw, T, H, E, E, false, &norm, gw.first);
  p.routing_offset = rw.first;
  p.counter_offset = cw.first;
  p.k = static_cast<std::uint32_t>(options.k);
  p.normalize = options.normalize ? 1u : 0u;
  const Pipeline& pipeline = ctx.pipelines.get(norm_variant("matmul_vec_norm_route", router.dtype(), norm_weight.dtype()));
  ctx.recorder.dispatch(pipeline, {xw.binding, ww.binding, gw.binding}, {yw.binding, rw.binding, cw.binding}, p,
                        {groups_for(E, 1, dev)});
}

void VulkanBackend::moe_pairs(const Tensor& x, const Window& routing, std::uint32_t k, const Window& table,
                              std::uint32_t E, const ExpertForms& forms, Tensor& out, bool accumulate,
                              const FoldedNorm* next) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  const std::int64_t T = x.dim(0), H = x.dim(1), I = forms.gate_shape[0];
  const bool sg = dev.features().subgroup_arithmetic;
  const Pipeline& gate_up = ctx.pipelines.get(variant("moe_gate_up", forms.role[0].dtype, sg));
  const Pipeline& down = ctx.pipelines.get(variant("moe_down", forms.role[2].dtype, sg));
  const std::uint32_t subgroup = std::max(1u, dev.features().subgroup_size);
  // Rows per moe_gate_up workgroup: kGateUpTeamRows per team, a team per subgroup (the workgroup
  // without subgroups).
  const std::int64_t team_rows = format::is_quantized(forms.role[0].dtype) ? kGateUpTeamRows : 1;
  const std::int64_t teams = sg ? std::max<std::uint32_t>(1, gate_up.spec.local_size / subgroup) : 1;
  const std::int64_t gate_up_rows = team_rows * teams;
  Tensor act = empty({T * k, I});
  const Window xw = whole(x, dev), aw = whole(act, dev), ow = whole(out, dev);

  // The parameters of one projection: input [*, K] at `in`, N output rows, blocks of `role`.
  auto pair_params = [&](const Window& in, const Window& to, std::int64_t K, std::int64_t N, std::size_t role,
                         const Shape& shape) {
    params::MoePairParams p{};
    p.in_offset = in.first;
    p.routing_offset = routing.first;
    p.table_offset = table.first;
    p.out_offset = to.first;
    p.T = static_cast<std::uint32_t>(T);
    p.k = k;
    p.E = E;
    p.K = static_cast<std::uint32_t>(K);
    p.N = static_cast<std::uint32_t>(N);
    set_quant_rows(p, forms.role[role].dtype, forms.role[role].quant, shape);
    return p;
  };
  ctx.recorder.dispatch(gate_up, {xw.binding, routing.binding, table.binding}, {aw.binding},
                        pair_params(xw, aw, H, I, 0, forms.gate_shape),
                        {groups_for(I, gate_up_rows, dev, 0), groups_for(T * k, 1, dev, 1)});
  params::MoePairParams q = pair_params(aw, ow, I, H, 2, forms.down_shape);
  q.accumulate = accumulate ? 1u : 0u;
  // Without a fold the weight and scaled bindings are placeholders the shader leaves alone.
  Window nw = table, sw = ow;
  if (next != nullptr) {
    nw = whole(next->weight, dev);
    sw = whole(next->scaled, dev);
    q.fold = 1;
    q.fold_w_first = nw.first;
    q.fold_w_dtype = next->weight.dtype() == Dtype::f32 ? 0u : next->weight.dtype() == Dtype::bf16 ? 1u : 2u;
    q.fold_zero_centered = next->options.zero_centered ? 1u : 0u;
    q.fold_out_first = sw.first;
  }
  // moe_down: a workgroup per row (its subgroups over the token's experts).
  ctx.recorder.dispatch(down, {aw.binding, routing.binding, table.binding, nw.binding}, {ow.binding, sw.binding}, q,
                        {groups_for(H, 1, dev, 0), groups_for(T, 1, dev, 1)});
}

void VulkanBackend::moe_experts_pairs(const Tensor& x, const MoeRouting& routing, std::span<const ExpertWeights> experts,
                                      Tensor& out, bool accumulate) {
  Context& ctx = *context_;
  const std::vector<float> routing_values = routing_to_tensor(routing.experts, routing.weights, routing.k);
  const std::uint32_t E = static_cast<std::uint32_t>(routing.unique.back()) + 1;
  ExpertForms forms;
  for (std::size_t r = 0; r < 3; ++r) {
    const format::TensorView& view = experts[0].block(r);
    forms.role[r] = weight_form(view, "moe_experts");
  }
  forms.gate_shape = experts[0].gate.shape;
  forms.down_shape = experts[0].down.shape;
  const std::size_t batch = expert_batch(experts);
  bool written = accumulate;
  for (std::size_t b0 = 0; b0 < experts.size(); b0 += batch) {
    const std::size_t b1 = std::min(experts.size(), b0 + batch);
    const std::vector<std::array<Tensor, 3>> blocks = expert_tensors(experts.subspan(b0, b1 - b0));
    std::vector<std::uint32_t> table(static_cast<std::size_t>(E) * 6, 0u);  // only this batch's experts
    for (std::size_t e = b0; e < b1; ++e) {
      const auto entry = table_entry(blocks[e - b0]);
      std::copy(entry.begin(), entry.end(), table.begin() + static_cast<std::ptrdiff_t>(routing.unique[e]) * 6);
    }
    ctx.recorder.note_reads(block_ranges(blocks));
    const Window routing_window{ctx.recorder.stage(std::as_bytes(std::span(routing_values))), 0};
    const Window table_window{ctx.recorder.stage(std::as_bytes(std::span(table))), 0};
    moe_pairs(x, routing_window, static_cast<std::uint32_t>(routing.k), table_window, E, forms, out, written);
    written = true;
  }
}

bool VulkanBackend::can_route_on_device(int layer, std::int64_t n_tokens) const {
  if (!expert_cache_) return false;
  const int m = expert_cache_->moe_layer(layer);
  if (m < 0 || !expert_cache_->all_resident(m)) return false;
  const ExpertForms& forms = layer_forms_[static_cast<std::size_t>(m)];
  if (n_tokens <= kPairMaxTokens) return pair_kernels_fit(forms);
  // Many tokens: the grouped kernels over the tier's table (ops/moe_grouped.cpp).
  return grouped_routing_fits(forms, n_tokens, layout_k_, expert_cache_->n_experts(m));
}

void VulkanBackend::moe_experts_routed(const Tensor& x, const Tensor& routing, int layer, Tensor& out,
                                       bool accumulate, const FoldedNorm* next) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  cpu::check_rank(x, 2, "moe_experts_routed", "x");
  f32_storage_of(x, ctx, "moe_experts_routed", "x");
  f32_storage_of(routing, ctx, "moe_experts_routed", "routing");
  f32_storage_of(out, ctx, "moe_experts_routed", "out");
  const std::int64_t T = x.dim(0);
  MF_CHECK(out.shape() == x.shape() && routing.rank() == 2 && routing.dim(0) == T && routing.dim(1) % 2 == 0 &&
               routing.dim(1) >= 2 && routing.dim(1) <= 2 * kMaxK,
           ShapeError, "[moe_experts_routed] x ", format::shape_string(x.shape()), ", routing ",
           format::shape_string(routing.shape()), ", out ", format::shape_string(out.shape()),
           "; expected out like x and routing [T, 2k]");
  MF_CHECK(can_route_on_device(layer, T), InternalError, "[moe_experts_routed] layer ", layer,
           " cannot route on the device (ask can_route_on_device first)");
  cpu::check_disjoint(x, out, "moe_experts_routed", "x");
  if (next != nullptr) check_folded_norm(*next, out);
  DeviceExpertCache& cache = *expert_cache_;
  const int m = cache.moe_layer(layer);
  const ExpertForms& forms = layer_forms_[static_cast<std::size_t>(m)];
  MF_CHECK(forms.gate_shape[1] == x.dim(1), ShapeError, "[moe_experts_routed] x ", format::shape_string(x.shape()),
           " does not fit the experts of layer ", layer, " (gate ", format::shape_string(forms.gate_shape), ")");
  const Window table = window(cache.table(), cache.table_first(m), static_cast<std::int64_t>(cache.n_experts(m)) * 6, dev);
  const auto E = static_cast<std::uint32_t>(cache.n_experts(m));
  if (T <= kPairMaxTokens) {
    moe_pairs(x, whole(routing, dev), static_cast<std::uint32_t>(routing.dim(1) / 2), table, E, forms, out, accumulate,
              next);
  } else {
    MF_CHECK(next == nullptr, InternalError, "[moe_experts_routed] ", T,
             " tokens take no folded norm (ask folds_input_norm first)");
    MF_CHECK(grouped_routing_fits(forms, T, routing.dim(1) / 2, E), ShapeError, "[moe_experts_routed] routing ",
             format::shape_string(routing.shape()), " needs more rows than one binding holds (the device tier ",
             "was planned for k = ", layout_k_, ")");
    moe_grouped_routed(x, routing, table, E, forms, out, accumulate);
  }
  ++cache.stats.routed_layers;
}

bool VulkanBackend::expert_cache_holds_all() const { return expert_cache_ && expert_cache_->holds_all(); }

void VulkanBackend::load_experts(std::span<const ExpertWeights> experts) {
  if (!experts.empty()) expert_tensors(experts);
}

}  // namespace moeflux::backend::vk
