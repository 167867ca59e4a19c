#include "moeflux/arch/blocks/forward_routing.h"

#include <algorithm>
#include <vector>

#include "moeflux/backend/routing.h"

namespace moeflux::arch {

ForwardRouting::ForwardRouting(backend::Backend& backend, std::int64_t n_tokens, std::int64_t n_moe_layers, int k,
                               int n_experts, bool record_router_logits)
    : backend_(backend), T_(n_tokens), n_moe_(n_moe_layers), k_(k), E_(n_experts) {
  if (n_moe_ == 0 || T_ == 0) return;
  routing_ = backend.empty({n_moe_ * T_, 2 * static_cast<std::int64_t>(k_)});
  if (record_router_logits) logits_ = backend.empty({n_moe_ * T_, E_});
}

MoeRoutingSlot ForwardRouting::layer(std::int64_t moe_index) const {
  MoeRoutingSlot slot;
  slot.routing = routing_.rows(moe_index * T_, T_);
  if (logits_.defined()) slot.router_logits = logits_.rows(moe_index * T_, T_);
  return slot;
}

void ForwardRouting::download(const backend::Tensor& logits_out, std::vector<float>& logits,
                              RoutingRecord* record) const {
  logits.resize(logits_out.defined() ? static_cast<std::size_t>(logits_out.numel()) : 0);
  const bool routing = record != nullptr && n_moe_ > 0 && T_ > 0;
  std::vector<float> values(routing ? static_cast<std::size_t>(routing_.numel()) : 0);
  std::vector<float> router_logits(routing && logits_.defined() ? static_cast<std::size_t>(logits_.numel()) : 0);
  std::vector<backend::TensorDownload> downloads;
  if (logits_out.defined()) downloads.push_back({&logits_out, logits});
  if (routing) downloads.push_back({&routing_, values});
  if (!router_logits.empty()) downloads.push_back({&logits_, router_logits});
  backend_.download_all(downloads);
  if (record == nullptr) return;

  RoutingRecord& r = *record;
  const auto size = static_cast<std::size_t>(T_ * n_moe_ * k_);
  r.experts.assign(size, 0);
  r.weights.assign(size, 0.0f);
  r.router_logits.assign(logits_.defined() ? static_cast<std::size_t>(T_ * n_moe_ * E_) : 0, 0.0f);
  if (!routing) return;
  std::vector<std::int32_t> experts(size);
  std::vector<float> weights(size);
  backend::routing_from_tensor(values, k_, experts, weights);  // [moe_layers, T, k]
  for (std::int64_t j = 0; j < n_moe_; ++j) {
    for (std::int64_t t = 0; t < T_; ++t) {
      const std::size_t from = static_cast<std::size_t>((j * T_ + t) * k_), to = static_cast<std::size_t>((t * n_moe_ + j) * k_);
      std::copy_n(experts.begin() + static_cast<std::ptrdiff_t>(from), k_, r.experts.begin() + static_cast<std::ptrdiff_t>(to));
      std::copy_n(weights.begin() + static_cast<std::ptrdiff_t>(from), k_, r.weights.begin() + static_cast<std::ptrdiff_t>(to));
    }
  }
  for (std::int64_t j = 0; j < n_moe_ && !router_logits.empty(); ++j) {
    for (std::int64_t t = 0; t < T_; ++t) {
      std::copy_n(router_logits.begin() + (j * T_ + t) * E_, E_, r.router_logits.begin() + (t * n_moe_ + j) * E_);
    }
  }
}

}  // namespace moeflux::arch
