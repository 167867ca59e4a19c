#include "moeflux/arch/blocks/moe_block.h"

#include "moeflux/util/error.h"

namespace moeflux::arch {

using backend::Tensor;

void mlp_block(backend::Backend& backend, const MlpWeights& weights, const Tensor& x, Tensor& out) {
  const std::int64_t T = x.dim(0), I = weights.gate_proj.dim(0);
  Tensor gate = backend.empty({T, I});
  Tensor up = backend.empty({T, I});
  backend.matmul(x, weights.gate_proj, gate);
  backend.matmul(x, weights.up_proj, up);
  backend.swiglu(gate, up, gate);
  backend.matmul(gate, weights.down_proj, out);
}

void moe_block(backend::Backend& backend, experts::ExpertStore& store, const MoeConfig& config,
               const MoeWeights& weights, const Tensor& x, Tensor& out, MoeRoutingOut& routing) {
  const std::int64_t T = x.dim(0);
  const int E = config.n_experts, k = config.routing.k;

  Tensor logits = backend.empty({T, E});
  backend.matmul(x, weights.router, logits);
  routing.router_logits.resize(static_cast<std::size_t>(T * E));
  backend.download(logits, routing.router_logits);  // the layer's one sync point

  routing.experts.resize(static_cast<std::size_t>(T * k));
  routing.weights.resize(static_cast<std::size_t>(T * k));
  route_softmax_topk(routing.router_logits, T, E, config.routing, routing.experts, routing.weights);

  const std::vector<std::int32_t> unique = unique_experts(routing.experts);
  std::vector<experts::ExpertRecord> records;
  try {
    records = store.fetch(config.layer, unique);
  } catch (const Error& e) {
    e.rethrow_with(util::concat("reading the experts of layer ", config.layer));
  }
  std::vector<backend::ExpertWeights> expert_weights;
  expert_weights.reserve(records.size());
  for (const auto& record : records) {
    MF_ASSERT(record.blocks.size() == 3, "expert record with ", record.blocks.size(), " blocks");
    expert_weights.push_back({record.blocks[0], record.blocks[1], record.blocks[2]});
  }
  const backend::MoeRouting moe{T, k, routing.experts, routing.weights, unique};
  backend.moe_experts(x, moe, expert_weights, out);

  if (config.has_shared_expert) {
    const std::int64_t H = x.dim(1);
    Tensor shared = backend.empty({T, H});
    mlp_block(backend, weights.shared_expert, x, shared);
    Tensor gate = backend.empty({T, 1});
    backend.matmul(x, weights.shared_expert_gate, gate);
    backend.sigmoid_mul(gate, shared, shared);
    backend.add(out, shared, out);
  }
}

}  // namespace moeflux::arch
