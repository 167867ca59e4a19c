#include "moeflux/backend/vulkan/profiler.h"

#include "moeflux/backend/vulkan/check.h"
#include "moeflux/backend/vulkan/structs.h"

namespace moeflux::backend::vk {
namespace {

constexpr std::uint32_t kQueriesPerBatch = 4096;  // later commands of a longer batch go unmeasured

}  // namespace

Profiler::Profiler(const Device& device, bool enabled) : device_(device) {
  if (!enabled) return;
  VkPhysicalDeviceProperties props;
  vkGetPhysicalDeviceProperties(device.physical(), &props);
  std::uint32_t n = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(device.physical(), &n, nullptr);
  std::vector<VkQueueFamilyProperties> families(n);
  vkGetPhysicalDeviceQueueFamilyProperties(device.physical(), &n, families.data());
  const std::uint32_t bits = families[device.compute_family()].timestampValidBits;
  if (bits == 0 || props.limits.timestampPeriod <= 0.0f) return;  // no timestamps: stays off
  enabled_ = true;
  period_ns_ = static_cast<double>(props.limits.timestampPeriod);
  mask_ = bits >= 64 ? ~0ull : (1ull << bits) - 1;
}

void Profiler::begin(VkCommandBuffer cmd, BatchQueries& q, bool after_wait) {
  if (!enabled_) return;
  q.after_wait = after_wait;
  if (q.pool == VK_NULL_HANDLE) {
    auto info = vk_struct<VkQueryPoolCreateInfo>(VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO);
    info.queryType = VK_QUERY_TYPE_TIMESTAMP;
    info.queryCount = kQueriesPerBatch;
    check(vkCreateQueryPool(device_.handle(), &info, nullptr, &q.pool), "vkCreateQueryPool");
  }
  vkCmdResetQueryPool(cmd, q.pool, 0, kQueriesPerBatch);
  vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, q.pool, 0);
  q.used = 1;
  q.labels.clear();
}

void Profiler::mark(VkCommandBuffer cmd, BatchQueries& q, std::string_view label) {
  if (!enabled_ || q.used == 0 || q.used >= kQueriesPerBatch) return;
  vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, q.pool, q.used++);
  q.labels.push_back(label);
}

void Profiler::collect(BatchQueries& q) {
  if (!enabled_ || q.used < 2) {
    q.used = 0;
    return;
  }
  std::vector<std::uint64_t> t(q.used);
  check(vkGetQueryPoolResults(device_.handle(), q.pool, 0, q.used, t.size() * sizeof(std::uint64_t), t.data(),
                              sizeof(std::uint64_t), VK_QUERY_RESULT_64_BIT),
        "vkGetQueryPoolResults");
  // Batches complete in submission order on the one queue, so a batch that began after the one
  // before it ended found the GPU idle.
  const std::uint64_t begin = t[0] & mask_;
  if (last_end_ != 0 && begin > last_end_) {
    const double idle = static_cast<double>(begin - last_end_) * period_ns_ * 1e-9;
    idle_seconds_ += idle;
    if (q.after_wait) idle_after_wait_seconds_ += idle;
  }
  last_end_ = t[q.used - 1] & mask_;
  for (std::uint32_t i = 1; i < q.used; ++i) {
    const std::uint64_t a = t[i - 1] & mask_, b = t[i] & mask_;
    const std::uint64_t dt = b >= a ? b - a : 0;  // a command that finished before the one before it
    const std::string_view label = q.labels[i - 1];
    auto it = usage_.find(label);
    if (it == usage_.end()) it = usage_.emplace(std::string(label), Usage{}).first;
    it->second.seconds += static_cast<double>(dt) * period_ns_ * 1e-9;
    ++it->second.commands;
  }
  q.used = 0;
}

void Profiler::destroy(BatchQueries& q) {
  if (q.pool != VK_NULL_HANDLE) vkDestroyQueryPool(device_.handle(), q.pool, nullptr);
  q.pool = VK_NULL_HANDLE;
}

}  // namespace moeflux::backend::vk
