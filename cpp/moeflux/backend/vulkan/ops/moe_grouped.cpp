// The routed experts of many tokens (prefill) in three dispatches per batch of experts, however
// many experts the batch has: the (token, slot) pairs sorted by expert, each expert's rows padded
// to whole 64-row tiles (moe_grouped with GATE_UP: act = silu(x gate^T) * (x up^T); then down), and
// moe_combine, which adds each token's experts in ascending order into out. A tile's count of real
// rows lets the kernel skip the FMAs of its padding. Each output element is computed the same way
// whatever the batch holds, so batches give the bits of one call. With every expert of the layer
// in the device tier (moe_experts_routed), the plans come straight from the downloaded routing and
// the tier's own table: none of the per-expert work of moe_experts.
#include <algorithm>
#include <bit>
#include <tuple>
#include <vector>

#include "moeflux/backend/routing.h"
#include "moeflux/backend/vulkan/device_expert_cache.h"
#include "moeflux/backend/vulkan/ops/expert_table.h"
#include "moeflux/backend/vulkan/vulkan_backend.h"
#include "moeflux/util/error.h"
#include "params/moe_combine.h"
#include "params/moe_grouped.h"

namespace moeflux::backend::vk {
namespace {

constexpr std::int64_t kTile = 64;  // TILE of moe_grouped.comp
constexpr std::int64_t kGateUpColumns = 64, kDownColumns = 128;  // its TN with and without GATE_UP
constexpr std::uint32_t kNoRow = 0xFFFFFFFFu;
// Tiles the rows of P pairs over E experts can take at most: one partial tile per expert used.
std::int64_t max_tiles(std::int64_t P, std::int64_t E) { return P / kTile + std::min(E, P) + 1; }

// Rows of act or y (I or H floats each) one binding holds.
std::int64_t max_rows(const Device& device, std::int64_t H, std::int64_t I) {
  return window_bytes(device) / (std::max(H, I) * 4);
}

// One batch's plans: for moe_grouped, tile experts, tile row counts, then row tokens; for
// moe_combine, per token its k rows (ascending expert, then slot; kNoRow for other batches'
// experts) then weight bits.
struct BatchPlan {
  std::vector<std::uint32_t> grouped, combine;
  std::int64_t n_tiles = 0, rows = 0;
};

BatchPlan plan_batch(const MoeRouting& routing, std::span<const std::int32_t> batch_experts) {
  const std::int64_t T = routing.n_tokens;
  const auto k = static_cast<std::size_t>(routing.k);
  std::vector<std::uint32_t> tiles, counts, tokens;
  std::vector<std::uint32_t> row_of(static_cast<std::size_t>(T) * k, kNoRow);
  // Each batch expert's pairs, ascending: one pass over the pairs, not one per expert.
  const std::int32_t top = batch_experts.empty() ? 0 : *std::max_element(batch_experts.begin(), batch_experts.end());
  std::vector<std::int32_t> index_of(static_cast<std::size_t>(top) + 1, -1);
  for (std::size_t i = 0; i < batch_experts.size(); ++i)
    index_of[static_cast<std::size_t>(batch_experts[i])] = static_cast<std::int32_t>(i);
  std::vector<std::vector<std::uint32_t>> pairs_of(batch_experts.size());
  for (std::size_t s = 0; s < row_of.size(); ++s) {
    const std::int32_t e = routing.experts[s];
    if (e >= 0 && e <= top && index_of[static_cast<std::size_t>(e)] >= 0)
      pairs_of[static_cast<std::size_t>(index_of[static_cast<std::size_t>(e)])].push_back(static_cast<std::uint32_t>(s));
  }
  for (std::size_t i = 0; i < batch_experts.size(); ++i) {
    const std::size_t first = tokens.size();
    for (const std::uint32_t s : pairs_of[i]) {
      row_of[s] = static_cast<std::uint32_t>(tokens.size());
      tokens.push_back(static_cast<std::uint32_t>(s / k));
    }
    if (tokens.size() == first) continue;
    for (std::size_t r = first; r < tokens.size(); r += kTile) {
      counts.push_back(static_cast<std::uint32_t>(std::min<std::size_t>(kTile, tokens.size() - r)));
    }
    while (tokens.size() % kTile != 0) tokens.push_back(kNoRow);
    tiles.insert(tiles.end(), (tokens.size() - first) / kTile, static_cast<std::uint32_t>(batch_experts[i]));
  }
  BatchPlan plan;
  plan.n_tiles = static_cast<std::int64_t>(tiles.size());
  plan.rows = static_cast<std::int64_t>(tokens.size());
  plan.grouped = std::move(tiles);
  plan.grouped.insert(plan.grouped.end(), counts.begin(), counts.end());
  plan.grouped.insert(plan.grouped.end(), tokens.begin(), tokens.end());
  plan.combine.assign(2 * row_of.size(), kNoRow);
  std::vector<std::tuple<std::int32_t, std::size_t>> order;  // (expert, slot) of one token
  for (std::int64_t t = 0; t < T; ++t) {
    order.clear();
    for (std::size_t j = 0; j < k; ++j) {
      const std::size_t s = static_cast<std::size_t>(t) * k + j;
      if (row_of[s] != kNoRow) order.emplace_back(routing.experts[s], s);
    }
    std::sort(order.begin(), order.end());
    for (std::size_t j = 0; j < order.size(); ++j) {
      const std::size_t s = std::get<1>(order[j]), at = static_cast<std::size_t>(t) * k + j;
      plan.combine[at] = row_of[s];
      plan.combine[row_of.size() + at] = std::bit_cast<std::uint32_t>(routing.weights[s]);
    }
  }
  return plan;
}

}  // namespace

bool VulkanBackend::moe_experts_grouped(const Tensor& x, const MoeRouting& routing,
                                        std::span<const ExpertWeights> experts, Tensor& out, bool accumulate) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  const std::int64_t T = x.dim(0), H = x.dim(1), I = experts[0].gate.shape[0];
  // The choice depends on the shapes alone, never on the batches (the same bits for any budget):
  // x, out and one expert's rows must fit a binding; experts are then grouped so that rows do.
  const std::int64_t row_limit = max_rows(dev, H, I);
  if (T * H * 4 > window_bytes(dev) || T * routing.k + kTile > row_limit) return false;

  ExpertForms forms;
  forms.role = {weight_form(experts[0].gate, "moe_experts"), weight_form(experts[0].up, "moe_experts"),
                weight_form(experts[0].down, "moe_experts")};
  forms.gate_shape = experts[0].gate.shape;
  forms.down_shape = experts[0].down.shape;
  const auto E = static_cast<std::uint32_t>(routing.unique.back()) + 1;

  // Padded rows of each expert (routing.unique ascending: an expert's index by binary search).
  std::vector<std::int64_t> padded(experts.size(), 0);
  for (const std::int32_t e : routing.experts) {
    const auto at = std::lower_bound(routing.unique.begin(), routing.unique.end(), e);
    if (at != routing.unique.end() && *at == e) ++padded[static_cast<std::size_t>(at - routing.unique.begin())];
  }
  for (std::int64_t& n : padded) n = (n + kTile - 1) / kTile * kTile;
  std::int64_t rows_cap = 0;
  const std::size_t batch = expert_batch(experts);
  for (std::size_t b0 = 0; b0 < experts.size(); b0 += batch) {
    std::int64_t rows = 0;
    for (std::size_t e = b0; e < std::min(experts.size(), b0 + batch); ++e) rows += padded[e];
    rows_cap = std::max(rows_cap, std::min(rows, row_limit));
  }
  Tensor act_all = empty({std::max<std::int64_t>(rows_cap, 1), I}), y_all = empty({std::max<std::int64_t>(rows_cap, 1), H});
  bool written = accumulate;
  for (std::size_t b0 = 0; b0 < experts.size();) {
    // A device batch (every expert keeps its slot), cut where its rows would pass one binding.
    std::size_t b1 = b0;
    std::int64_t rows = 0;
    while (b1 < std::min(experts.size(), b0 + batch) && rows + padded[b1] <= row_limit) rows += padded[b1++];
    const BatchPlan plan = plan_batch(routing, routing.unique.subspan(b0, b1 - b0));
    const std::size_t first = b0;
    b0 = b1;
    if (plan.rows == 0) continue;
    const std::vector<std::array<Tensor, 3>> blocks = expert_tensors(experts.subspan(first, b1 - first));
    std::vector<std::uint32_t> table(static_cast<std::size_t>(E) * 6, 0u);
    for (std::size_t e = first; e < b1; ++e) {
      const auto entry = table_entry(blocks[e - first]);
      std::copy(entry.begin(), entry.end(), table.begin() + static_cast<std::ptrdiff_t>(routing.unique[e]) * 6);
    }
    ctx.recorder.note_reads(block_ranges(blocks));
    const Binding table_b = ctx.recorder.stage(std::as_bytes(std::span(table)));
    const Binding grouped_b = ctx.recorder.stage(std::as_bytes(std::span(plan.grouped)));
    const Binding combine_b = ctx.recorder.stage(std::as_bytes(std::span(plan.combine)));
    record_grouped(x, forms, {table_b, 0}, E, {grouped_b, 0}, {combine_b, 0}, plan.n_tiles,
                   act_all.rows(0, plan.rows), y_all.rows(0, plan.rows), routing.k, out, written);
    written = true;
  }
  if (!written) fill(out, 0.0f);
  return true;
}

void VulkanBackend::record_grouped(const Tensor& x, const ExpertForms& forms, const Window& table, std::uint32_t E,
                                   const Window& grouped, const Window& combine, std::int64_t n_tiles,
                                   const Tensor& act, const Tensor& y, std::int64_t k, Tensor& out, bool accumulate) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  const std::int64_t T = x.dim(0), H = x.dim(1), I = forms.gate_shape[0];
  const Pipeline& gate_up = ctx.pipelines.get(variant("moe_grouped", forms.role[0].dtype) + "_gate_up");
  const Pipeline& down = ctx.pipelines.get(variant("moe_grouped", forms.role[2].dtype) + "_down");
  const Pipeline& combine_pipeline = ctx.pipelines.get("moe_combine_f32");
  const Window xw = whole(x, dev), aw = whole(act, dev), yw = whole(y, dev), ow = whole(out, dev);
  // The parameters of one tiled product: input [*, K] at `in`, N outputs per row, `role`'s blocks.
  auto grouped_params = [&](const Window& in, const Window& to, std::int64_t K, std::int64_t N, std::size_t role,
                            const Shape& shape) {
    params::MoeGroupedParams g{};
    g.in_offset = in.first;
    g.plan_offset = grouped.first;
    g.table_offset = table.first;
    g.n_tiles = static_cast<std::uint32_t>(n_tiles);
    g.E = E;
    g.K = static_cast<std::uint32_t>(K);
    g.N = static_cast<std::uint32_t>(N);
    g.out_offset = to.first;
    g.in_vec4 = in.first % 4 == 0 && K % 4 == 0 ? 1u : 0u;
    set_quant_rows(g, forms.role[role].dtype, forms.role[role].quant, shape);
    return g;
  };
  ctx.recorder.dispatch(gate_up, {xw.binding, grouped.binding, table.binding}, {aw.binding},
                        grouped_params(xw, aw, H, I, 0, forms.gate_shape),
                        {groups_for(I, kGateUpColumns, dev, 0), groups_for(n_tiles, 1, dev, 1)});
  ctx.recorder.dispatch(down, {aw.binding, grouped.binding, table.binding}, {yw.binding},
                        grouped_params(aw, yw, I, H, 2, forms.down_shape),
                        {groups_for(H, kDownColumns, dev, 0), groups_for(n_tiles, 1, dev, 1)});
  const params::MoeCombineParams c{yw.first, combine.first, ow.first, static_cast<std::uint32_t>(T),
                                   static_cast<std::uint32_t>(k), static_cast<std::uint32_t>(H), accumulate ? 1u : 0u};
  ctx.recorder.dispatch(combine_pipeline, {yw.binding, combine.binding}, {ow.binding}, c,
                        {groups_for(H, combine_pipeline.spec.local_size, dev, 0), groups_for(T, 1, dev, 1)});
}

bool VulkanBackend::grouped_routing_fits(const ExpertForms& forms, std::int64_t T, std::int64_t k, std::int64_t E) const {
  const Device& dev = context_->device;
  const std::int64_t H = forms.gate_shape[1], I = forms.gate_shape[0];
  return T * H * 4 <= window_bytes(dev) && max_tiles(T * k, E) * kTile <= max_rows(dev, H, I);
}

void VulkanBackend::moe_grouped_routed(const Tensor& x, const Tensor& routing, const Window& table, std::uint32_t E,
                                       const ExpertForms& forms, Tensor& out, bool accumulate) {
  const std::int64_t T = x.dim(0), k = routing.dim(1) / 2, P = T * k, I = forms.gate_shape[0], H = x.dim(1);
  std::vector<float> values(static_cast<std::size_t>(2 * P));
  download(routing, values);  // the layer's one sync point
  std::vector<std::int32_t> experts(static_cast<std::size_t>(P));
  std::vector<float> weights(experts.size());
  routing_from_tensor(values, static_cast<int>(k), experts, weights);
  // The experts used, ascending.
  std::vector<char> used(E, 0);
  for (const std::int32_t e : experts) {
    MF_CHECK(e >= 0 && static_cast<std::uint32_t>(e) < E, ShapeError, "[moe_experts_routed] routing names expert ", e,
             " of a layer of ", E);
    used[static_cast<std::size_t>(e)] = 1;
  }
  std::vector<std::int32_t> unique;
  for (std::uint32_t e = 0; e < E; ++e) {
    if (used[e]) unique.push_back(static_cast<std::int32_t>(e));
  }
  const MoeRouting r{T, static_cast<int>(k), experts, weights, unique};
  const BatchPlan plan = plan_batch(r, unique);
  Context& ctx = *context_;
  const Binding grouped_b = ctx.recorder.stage(std::as_bytes(std::span(plan.grouped)));
  const Binding combine_b = ctx.recorder.stage(std::as_bytes(std::span(plan.combine)));
  record_grouped(x, forms, table, E, {grouped_b, 0}, {combine_b, 0}, plan.n_tiles, empty({plan.rows, I}),
                 empty({plan.rows, H}), k, out, accumulate);
  expert_cache_->stats.hits += unique.size();
}

}  // namespace moeflux::backend::vk
