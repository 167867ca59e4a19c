// Memory: a few large VkDeviceMemory blocks per kind, each bound to one VkBuffer over the whole
// block, sub-allocated first-fit with coalescing frees. Tensors are (block, offset, size) ranges of
// those buffers, so creating one costs no Vulkan call. Frees of memory the GPU may still use wait
// for a timeline value (free_after; collect).
#pragma once

#include <vulkan/vulkan.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "moeflux/backend/vulkan/device.h"

namespace moeflux::backend::vk {

enum class MemoryKind {
  device,   // device-local: weights, activations, KV cache, expert slots
  staging,  // host-visible, coherent (cached where possible): uploads, readbacks, small shader inputs
  shared,   // device-local and host-visible (resizable BAR, integrated GPUs, lavapipe), where present
};

struct Block {
  VkDeviceMemory memory = VK_NULL_HANDLE;
  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceSize size = 0;
  std::byte* mapped = nullptr;  // host-visible kinds only
  VkDeviceAddress address = 0;  // of the buffer's first byte, for shaders that read by address
  MemoryKind kind = MemoryKind::device;
  std::uint32_t id = 0;         // unique for the Memory's lifetime (barrier tracking)
  std::map<VkDeviceSize, VkDeviceSize> free;  // offset -> size, coalesced
};

struct Allocation {
  Block* block = nullptr;
  VkDeviceSize offset = 0;
  VkDeviceSize size = 0;
  explicit operator bool() const { return block != nullptr; }
  std::byte* mapped() const { return block->mapped + offset; }  // host-visible kinds only
  VkDeviceAddress address() const { return block->address + offset; }
};

class Memory {
 public:
  explicit Memory(const Device& device);
  ~Memory();
  Memory(const Memory&) = delete;
  Memory& operator=(const Memory&) = delete;

  // `size` bytes aligned for any storage binding; `what` names the use in errors. Throws
  // BudgetError when the device is out of memory, Unsupported above maxMemoryAllocationSize.
  Allocation allocate(MemoryKind kind, VkDeviceSize size, std::string_view what);
  void free(const Allocation& allocation);
  // Frees once the GPU timeline reaches `value` (collect() with a value >= it).
  void free_after(const Allocation& allocation, std::uint64_t value);
  void collect(std::uint64_t completed);

  bool has_shared() const { return type_[static_cast<int>(MemoryKind::shared)] >= 0; }
  VkDeviceSize alignment() const { return alignment_; }
  VkDeviceSize bytes_in_use(MemoryKind kind) const;

 private:
  Block* new_block(MemoryKind kind, VkDeviceSize size, std::string_view what);
  void release_block(Block* block);

  const Device& device_;
  VkDeviceSize alignment_;
  int type_[3] = {-1, -1, -1};  // memory type index per kind
  std::vector<std::unique_ptr<Block>> blocks_;
  std::vector<std::pair<std::uint64_t, Allocation>> deferred_;
  VkDeviceSize in_use_[3] = {0, 0, 0};
  std::uint32_t next_id_ = 1;
  mutable std::mutex mutex_;  // the expert store may allocate slots from its own threads
};

}  // namespace moeflux::backend::vk
