#include "moeflux/arch/blocks/moe_block.h"

#include <algorithm>

#include "moeflux/backend/routing.h"
#include "moeflux/util/error.h"

namespace moeflux::arch {

using backend::Tensor;

namespace {

// out (+)= down(silu(gate) * up), gate and up [T, I] the products of the block's input.
void swiglu_down(backend::Backend& backend, const MlpWeights& weights, Tensor& gate, const Tensor& up, Tensor& out,
                 bool accumulate) {
  backend.swiglu(gate, up, gate);
  if (accumulate) backend.matmul_add(gate, weights.down_proj, out);
  else backend.matmul(gate, weights.down_proj, out);
}

}  // namespace

void mlp_block(backend::Backend& backend, const MlpWeights& weights, const PreNorm& norm, Tensor& x) {
  const std::int64_t T = x.dim(0), I = weights.gate_proj.dim(0);
  const Tensor ws[] = {weights.gate_proj, weights.up_proj};
  Tensor ys[] = {backend.empty({T, I}), backend.empty({T, I})};
  backend.norm_matmul(x, norm.weight, norm.options, ws, ys, nullptr);
  swiglu_down(backend, weights, ys[0], ys[1], x, true);
}

void moe_block(backend::Backend& backend, experts::ExpertStore& store, const MoeConfig& config,
               const MoeWeights& weights, const PreNorm& norm, Tensor& x, MoeRoutingSlot routing,
               const backend::FoldedNorm* next) {
  const std::int64_t T = x.dim(0), H = x.dim(1);
  const int E = config.n_experts, k = config.routing.k;
  MF_ASSERT(next == nullptr || (!config.has_shared_expert && backend.folds_input_norm(T)),
            "a folded norm the block cannot write");

  // The experts' input h = rms_norm(x), the router's logits and the routing in one op.
  Tensor h = backend.empty({T, H});
  Tensor logits = routing.router_logits.defined() ? routing.router_logits : backend.empty({T, E});
  backend.router(x, norm.weight, norm.options, weights.router, config.routing, logits, routing.routing, h);

  if (backend.can_route_on_device(config.layer, T)) {
    backend.moe_experts_routed(h, routing.routing, config.layer, x, /*accumulate=*/true, next);
  } else {
    std::vector<float> values(static_cast<std::size_t>(T * 2 * k));
    backend.download(routing.routing, values);  // the layer's one sync point
    std::vector<std::int32_t> experts(static_cast<std::size_t>(T * k));
    std::vector<float> expert_weights_of(experts.size());
    backend::routing_from_tensor(values, k, experts, expert_weights_of);

    // A prefill chunk may choose more experts than the caches hold at once: run them in ascending
    // batches, which accumulates in the same order as one call (bit-identical whatever the budget).
    // Experts the device tier holds are not read from the store.
    const std::vector<std::int32_t> unique = unique_experts(experts);
    std::size_t capacity = static_cast<std::size_t>(store.capacity(config.layer));
    const int device = backend.expert_capacity(config.layer);  // > 0: the layer has a device tier
    if (device > 0) capacity = std::min(capacity, static_cast<std::size_t>(device));
    MF_ASSERT(capacity >= 1, "expert batch capacity ", capacity);
    std::vector<backend::ExpertWeights> expert_weights;
    std::vector<std::int32_t> to_read;
    std::vector<std::size_t> read_at;  // per expert read: its index in the batch
    for (std::size_t begin = 0; begin < unique.size(); begin += capacity) {
      const auto batch = std::span<const std::int32_t>(unique).subspan(begin, std::min(capacity, unique.size() - begin));
      const std::vector<bool> held = backend.experts_held(config.layer, batch);
      to_read.clear();
      read_at.clear();
      for (std::size_t i = 0; i < batch.size(); ++i) {
        if (held[i]) continue;
        to_read.push_back(batch[i]);
        read_at.push_back(i);
      }
      // Each record goes to the device tier as soon as its read lands, while the others are in
      // flight; a backend without a tier uploads nothing, and moe_experts gets the bytes instead.
      std::vector<bool> uploaded(batch.size(), false);
      const auto upload = [&](std::size_t j, const experts::ExpertRecord& record) {
        MF_ASSERT(record.blocks.size() == 3, "expert record of ", record.expert, " has ", record.blocks.size(),
                  " blocks");
        uploaded[read_at[j]] =
            backend.upload_expert({record.blocks[0], record.blocks[1], record.blocks[2], config.layer, record.expert});
      };
      std::vector<experts::ExpertRecord> records;
      try {
        if (!to_read.empty()) {
          if (device > 0) backend.begin_expert_uploads(config.layer, batch);
          records = device > 0 ? store.fetch(config.layer, to_read, upload) : store.fetch(config.layer, to_read);
        }
      } catch (const Error& e) {
        e.rethrow_with(util::concat("reading the experts of layer ", config.layer));
      }
      expert_weights.clear();
      auto record = records.begin();
      for (std::size_t i = 0; i < batch.size(); ++i) {
        if (held[i]) {
          expert_weights.push_back({{}, {}, {}, config.layer, batch[i], true});
          continue;
        }
        MF_ASSERT(record != records.end() && record->blocks.size() == 3, "expert record of ", batch[i]);
        if (uploaded[i]) expert_weights.push_back({{}, {}, {}, config.layer, batch[i], true});
        else expert_weights.push_back({record->blocks[0], record->blocks[1], record->blocks[2], config.layer, record->expert});
        ++record;
      }
      const backend::MoeRouting moe{T, k, experts, expert_weights_of, batch};
      backend.moe_experts(h, moe, expert_weights, x, /*accumulate=*/true);
    }
    // The bits moe_experts_routed's fused copy has (x * w either way), whatever the budget.
    if (next != nullptr) {
      Tensor scaled = next->scaled;  // a handle to the caller's tensor
      backend.apply_norm_weight(x, next->weight, next->options, scaled);
    }
  }

  if (config.has_shared_expert) {  // x += sigmoid(h . gate) * mlp(h)
    const std::int64_t I = weights.shared_expert.gate_proj.dim(0);
    Tensor gate = backend.empty({T, I}), up = backend.empty({T, I}), shared = backend.empty({T, H});
    backend.matmul(h, weights.shared_expert.gate_proj, gate);
    backend.matmul(h, weights.shared_expert.up_proj, up);
    swiglu_down(backend, weights.shared_expert, gate, up, shared, false);
    Tensor shared_gate = backend.empty({T, 1});
    backend.matmul(h, weights.shared_expert_gate, shared_gate);
    backend.sigmoid_mul(shared_gate, shared, shared);
    backend.add(x, shared, x);
  }
}

}  // namespace moeflux::arch
