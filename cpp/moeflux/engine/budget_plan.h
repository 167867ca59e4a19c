// The budget planner: chooses the host and device expert cache budgets left unset (0) from free
// host memory (MemAvailable) and free device memory, and records what each choice came from, for
// model.stats() and `moeflux info`. Explicit budgets are kept as given.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "moeflux/backend/backend.h"
#include "moeflux/format/manifest.h"

namespace moeflux::engine {

struct BudgetPlan {
  std::uint64_t dense_bytes = 0;
  std::uint64_t total_experts = 0;
  // Host tier.
  std::uint64_t host_cache_bytes = 0;   // chosen
  std::string host_source;              // "given", "planned", "all experts" (free memory unknown or enough)
  std::uint64_t host_available_bytes = 0;  // MemAvailable; 0: unknown
  std::uint64_t host_min_bytes = 0, host_all_bytes = 0;
  // Device tier (a backend without one leaves device_slot_bytes 0).
  std::uint64_t device_cache_bytes = 0;
  std::string device_source = "none";
  std::uint64_t device_free_bytes = 0, device_heap_bytes = 0;
  bool device_free_from_budget_extension = false;
  std::uint64_t device_slot_bytes = 0, device_min_bytes = 0, device_all_bytes = 0;

  // The "plan_*" numbers of model.stats() (the sources are strings, added by the bindings).
  std::map<std::string, double> numbers() const;
};

// MemAvailable from /proc/meminfo in bytes; 0 where unknown.
std::uint64_t host_memory_available();

// Headroom kept free on each side for everything but the expert slots.
constexpr std::uint64_t kHostMarginBytes = 1ull << 30;
constexpr std::uint64_t kDeviceMarginBytes = 1ull << 30;

// Plans the host tier: `given` when non-zero, else MemAvailable minus the dense weights minus a
// margin (the larger of kHostMarginBytes and a tenth of MemAvailable), within [k records, every expert].
BudgetPlan plan_host(const format::Manifest& manifest, int k, std::uint64_t given, std::uint64_t dense_bytes,
                     std::uint64_t mem_available);

// Plans the device tier into `plan`: `given` when non-zero, else the device's free memory minus a
// margin for activations and the KV cache (the larger of kDeviceMarginBytes and a tenth of the
// heap), within [k slots, every expert].
void plan_device(BudgetPlan& plan, int k, std::uint64_t given, std::uint64_t slot_bytes,
                 const backend::DeviceMemoryInfo& memory);

// What the backend's device tier is told about the model's routed experts.
backend::ExpertCacheLayout expert_layout(const format::Manifest& manifest, int k);

}  // namespace moeflux::engine
