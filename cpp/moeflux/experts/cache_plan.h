// How a byte budget becomes expert slots: the slot size (the largest record stride), the slot
// count, and the pools: one per MoE layer when every layer can hold its top-k, else one shared.
#pragma once

#include <cstdint>
#include <vector>

#include "moeflux/format/manifest.h"
#include "moeflux/util/slot_pools.h"

namespace moeflux::experts {

// The slot size and the pools (util/slot_pools.h), MoE layers in manifest order.
struct CachePlan : util::PoolPlan {
  std::uint64_t slot_bytes = 0;
};

// cache_bytes 0 means a slot for every expert. Throws BudgetError when the budget holds fewer than
// k records (the message gives the smallest budget that works), ConfigError for k outside 1..E.
CachePlan plan_cache(const format::Manifest& manifest, std::uint64_t cache_bytes, int k);

// k slots of the largest stride; 0 for a model without experts.
std::uint64_t min_cache_bytes(const format::Manifest& manifest, int k);

}  // namespace moeflux::experts
