// Budget planning from free memory, and the expert layout handed to backends with a device tier.
#include "moeflux/engine/budget_plan.h"

#include <algorithm>
#include <fstream>
#include <sstream>

namespace moeflux::engine {
namespace {

// `free` minus the margin, within [lo, hi]; the source says which bound (if any) decided.
std::uint64_t fit(std::uint64_t free, std::uint64_t margin, std::uint64_t lo, std::uint64_t hi, std::string& source) {
  const std::uint64_t room = free > margin ? free - margin : 0;
  source = room >= hi ? "all experts" : "planned";
  return std::clamp(room, lo, hi);
}

}  // namespace

std::uint64_t host_memory_available() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("MemAvailable:", 0) != 0) continue;
    std::istringstream fields(line.substr(13));
    std::uint64_t kib = 0;
    fields >> kib;
    return kib * 1024;
  }
  return 0;
}

BudgetPlan plan_host(const format::Manifest& manifest, int k, std::uint64_t given, std::uint64_t dense_bytes,
                     std::uint64_t mem_available) {
  BudgetPlan plan;
  plan.dense_bytes = dense_bytes;
  std::uint64_t stride = 0;
  for (const auto& l : manifest.expert_layers) {
    stride = std::max(stride, l.stride);
    plan.total_experts += static_cast<std::uint64_t>(l.n_experts);
  }
  plan.host_min_bytes = stride * static_cast<std::uint64_t>(std::max(k, 0));
  plan.host_all_bytes = stride * plan.total_experts;
  plan.host_available_bytes = mem_available;
  if (given != 0) {
    plan.host_cache_bytes = given;
    plan.host_source = "given";
  } else if (mem_available == 0 || plan.host_all_bytes == 0) {
    plan.host_cache_bytes = plan.host_all_bytes;
    plan.host_source = "all experts";
  } else {
    const std::uint64_t margin = std::max(kHostMarginBytes, mem_available / 10);
    const std::uint64_t free = mem_available > dense_bytes ? mem_available - dense_bytes : 0;
    plan.host_cache_bytes = fit(free, margin, plan.host_min_bytes, plan.host_all_bytes, plan.host_source);
  }
  return plan;
}

void plan_device(BudgetPlan& plan, int k, std::uint64_t given, std::uint64_t slot_bytes,
                 const backend::DeviceMemoryInfo& memory) {
  plan.device_slot_bytes = slot_bytes;
  plan.device_free_bytes = memory.free_bytes;
  plan.device_heap_bytes = memory.heap_bytes;
  plan.device_free_from_budget_extension = memory.from_budget_extension;
  plan.device_min_bytes = slot_bytes * static_cast<std::uint64_t>(std::max(k, 0));
  plan.device_all_bytes = slot_bytes * plan.total_experts;
  if (slot_bytes == 0) {
    plan.device_source = "none";
    plan.device_cache_bytes = 0;
  } else if (given != 0) {
    plan.device_cache_bytes = given;
    plan.device_source = "given";
  } else {
    const std::uint64_t margin = std::max(kDeviceMarginBytes, memory.heap_bytes / 10);
    plan.device_cache_bytes = fit(memory.free_bytes, margin, plan.device_min_bytes, plan.device_all_bytes,
                                  plan.device_source);
  }
}

std::map<std::string, double> BudgetPlan::numbers() const {
  auto d = [](std::uint64_t v) { return static_cast<double>(v); };
  return {{"plan_dense_bytes", d(dense_bytes)},
          {"plan_total_experts", d(total_experts)},
          {"plan_host_cache_bytes", d(host_cache_bytes)},
          {"plan_host_available_bytes", d(host_available_bytes)},
          {"plan_host_min_bytes", d(host_min_bytes)},
          {"plan_host_all_bytes", d(host_all_bytes)},
          {"plan_device_cache_bytes", d(device_cache_bytes)},
          {"plan_device_free_bytes", d(device_free_bytes)},
          {"plan_device_heap_bytes", d(device_heap_bytes)},
          {"plan_device_slot_bytes", d(device_slot_bytes)},
          {"plan_device_min_bytes", d(device_min_bytes)},
          {"plan_device_all_bytes", d(device_all_bytes)},
          {"plan_device_free_from_budget_extension", device_free_from_budget_extension ? 1.0 : 0.0}};
}

backend::ExpertCacheLayout expert_layout(const format::Manifest& manifest, int k) {
  backend::ExpertCacheLayout layout;
  layout.k = k;
  for (const auto& l : manifest.expert_layers) {
    backend::ExpertCacheLayout::Layer layer{l.layer, l.n_experts, {}};
    for (const auto& b : l.blocks)
      layer.blocks.push_back({b.name, b.dtype, b.shape, nullptr, static_cast<std::size_t>(b.nbytes), b.group_size, b.scale_dtype});
    layout.layers.push_back(std::move(layer));
  }
  return layout;
}

}  // namespace moeflux::engine
