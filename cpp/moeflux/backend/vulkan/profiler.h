// GPU time per shader, from timestamps the recorder writes after each command of a batch when
// profiling is on (VulkanOptions::profile, MOEFLUX_VULKAN_PROFILE=1): the time between a command's
// timestamp and the one before it goes to the command's label (its shader, or "copy"). Commands
// that overlap (no barrier between them) share the time out in the order they finish; the sum over
// labels is the batch's GPU time. The GPU's idle time between batches (a batch that began after the
// one before it ended: waiting for the host to record or submit) is counted apart, and of it the
// part before the first batch after a host wait (the host's turn from results to the next work).
// Off, it costs nothing.
#pragma once

#include <vulkan/vulkan.h>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "moeflux/backend/vulkan/device.h"

namespace moeflux::backend::vk {

// The timestamps of one command buffer.
struct BatchQueries {
  VkQueryPool pool = VK_NULL_HANDLE;
  std::uint32_t used = 0;
  std::vector<std::string_view> labels;  // of timestamps 1..used-1 (shader names live in the pipeline table)
  bool after_wait = false;  // the first batch after the host waited for every batch before it
};

class Profiler {
 public:
  Profiler(const Device& device, bool enabled);
  bool enabled() const { return enabled_; }
  void begin(VkCommandBuffer cmd, BatchQueries& q, bool after_wait);         // at the batch's start
  void mark(VkCommandBuffer cmd, BatchQueries& q, std::string_view label);  // after a command
  void collect(BatchQueries& q);  // the batch completed: adds its intervals
  void destroy(BatchQueries& q);

  // GPU time and commands measured per label since the last reset.
  struct Usage {
    double seconds = 0.0;
    std::uint64_t commands = 0;
  };
  const std::map<std::string, Usage, std::less<>>& usage() const { return usage_; }
  double idle_seconds() const { return idle_seconds_; }
  double idle_after_wait_seconds() const { return idle_after_wait_seconds_; }
  void reset() {
    usage_.clear();
    idle_seconds_ = idle_after_wait_seconds_ = 0.0;
  }

 private:
  const Device& device_;
  bool enabled_ = false;
  double period_ns_ = 1.0;
  std::uint64_t mask_ = ~0ull;
  std::map<std::string, Usage, std::less<>> usage_;
  double idle_seconds_ = 0.0, idle_after_wait_seconds_ = 0.0;
  std::uint64_t last_end_ = 0;  // the last timestamp of the batch collected before (0: none yet)
};

}  // namespace moeflux::backend::vk
