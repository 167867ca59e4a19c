// The routing of one forward call, left on the backend until the call ends: one [moe_layers * T,
// 2k] routing tensor (backend.h's encoding) and, when recording, [moe_layers * T, E] router
// logits; MoE layer j writes rows [j * T, (j + 1) * T). Downloaded once, with the logits, into
// the [T, moe_layers, k] record, so a layer whose experts are all on the device never waits.
#pragma once

#include <cstdint>

#include "moeflux/arch/model.h"
#include "moeflux/backend/backend.h"

namespace moeflux::arch {

// What one MoE layer writes: routing [T, 2k], router logits [T, E] (undefined: not recorded).
struct MoeRoutingSlot {
  backend::Tensor routing;
  backend::Tensor router_logits;
};

class ForwardRouting {
 public:
  ForwardRouting(backend::Backend& backend, std::int64_t n_tokens, std::int64_t n_moe_layers, int k, int n_experts,
                 bool record_router_logits);
  MoeRoutingSlot layer(std::int64_t moe_index) const;
  // The end of the call, with one host wait: `logits` from logits_out (lm_head_block's; cleared
  // where undefined), and the routing into `record` (experts, weights; router_logits when
  // recorded) unless it is null.
  void download(const backend::Tensor& logits_out, std::vector<float>& logits, RoutingRecord* record) const;

 private:
  backend::Backend& backend_;
  std::int64_t T_, n_moe_;
  int k_, E_;
  backend::Tensor routing_, logits_;
};

}  // namespace moeflux::arch
