// Memory types per kind, block creation, and the first-fit sub-allocator.
#include "moeflux/backend/vulkan/memory.h"

#include <algorithm>

#include "moeflux/backend/vulkan/check.h"
#include "moeflux/backend/vulkan/structs.h"
#include "moeflux/util/error.h"

namespace moeflux::backend::vk {
namespace {

// Block sizes per kind (device, staging, shared); a larger request gets a block of its own.
constexpr VkDeviceSize kBlockBytes[] = {256ull << 20, 32ull << 20, 64ull << 20};

constexpr VkBufferUsageFlags kUsage =
    VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT |
    VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT;

VkDeviceSize round_up(VkDeviceSize n, VkDeviceSize a) { return (n + a - 1) / a * a; }

const char* kind_name(MemoryKind kind) {
  switch (kind) {
    case MemoryKind::device: return "device-local";
    case MemoryKind::staging: return "host-visible staging";
    case MemoryKind::shared: return "device-local host-visible";
  }
  return "?";
}

// The memory type with every `required` flag and the most `preferred`/fewest `avoided` ones.
int pick_type(const VkPhysicalDeviceMemoryProperties& props, std::uint32_t allowed, VkMemoryPropertyFlags required,
              VkMemoryPropertyFlags preferred, VkMemoryPropertyFlags avoided) {
  int best = -1, best_score = -1;
  for (std::uint32_t i = 0; i < props.memoryTypeCount; ++i) {
    const VkMemoryPropertyFlags f = props.memoryTypes[i].propertyFlags;
    if ((allowed & (1u << i)) == 0 || (f & required) != required) continue;
    const int score = ((f & preferred) == preferred ? 2 : 0) + ((f & avoided) == 0 ? 1 : 0);
    if (score > best_score) best = static_cast<int>(i), best_score = score;
  }
  return best;
}

VkBuffer create_buffer(const Device& device, VkDeviceSize size) {
  auto info = vk_struct<VkBufferCreateInfo>(VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO);
  info.size = size;
  info.usage = kUsage;
  const std::uint32_t families[] = {device.compute_family(), device.transfer_family()};
  if (families[0] != families[1]) {  // concurrent: the transfer queue may write without ownership transfers
    info.sharingMode = VK_SHARING_MODE_CONCURRENT;
    info.queueFamilyIndexCount = 2;
    info.pQueueFamilyIndices = families;
  }
  VkBuffer buffer = VK_NULL_HANDLE;
  check(vkCreateBuffer(device.handle(), &info, nullptr, &buffer), "vkCreateBuffer");
  return buffer;
}

}  // namespace

Memory::Memory(const Device& device)
    : device_(device),
      alignment_(std::max<VkDeviceSize>(device.limits().storage_alignment, 64)) {
  VkBuffer probe = create_buffer(device, 4096);
  VkMemoryRequirements reqs;
  vkGetBufferMemoryRequirements(device.handle(), probe, &reqs);
  vkDestroyBuffer(device.handle(), probe, nullptr);
  alignment_ = std::max(alignment_, reqs.alignment);
  const auto& props = device.memory_properties();
  constexpr VkMemoryPropertyFlags local = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
  constexpr VkMemoryPropertyFlags host = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  // Plain device memory avoids host-visible types, which on discrete GPUs sit in a small BAR heap.
  type_[0] = pick_type(props, reqs.memoryTypeBits, local, 0, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT);
  type_[1] = pick_type(props, reqs.memoryTypeBits, host, VK_MEMORY_PROPERTY_HOST_CACHED_BIT, local);
  type_[2] = pick_type(props, reqs.memoryTypeBits, local | host, 0, 0);
  MF_CHECK(type_[0] >= 0 && type_[1] >= 0, Unsupported, "[vulkan] device '", device.info().name,
           "' offers no ", type_[0] < 0 ? "device-local" : "host-visible coherent", " memory for storage buffers");
}

Memory::~Memory() {
  for (auto& block : blocks_) {
    vkDestroyBuffer(device_.handle(), block->buffer, nullptr);
    vkFreeMemory(device_.handle(), block->memory, nullptr);
  }
}

Block* Memory::new_block(MemoryKind kind, VkDeviceSize size, std::string_view what) {
  const VkDeviceSize max = device_.limits().max_allocation;
  MF_CHECK(size <= max, Unsupported, "[vulkan] ", what, " needs ", size, " bytes in one piece, more than the ",
           max, " one allocation may hold on '", device_.info().name, "'");
  MF_CHECK(type_[static_cast<int>(kind)] >= 0, Unsupported, "[vulkan] device '", device_.info().name,
           "' has no ", kind_name(kind), " memory");
  VkDeviceSize bytes = std::min(std::max(size, kBlockBytes[static_cast<int>(kind)]), max);
  auto block = std::make_unique<Block>();
  block->kind = kind;
  for (;;) {
    block->buffer = create_buffer(device_, bytes);
    VkMemoryRequirements reqs;
    vkGetBufferMemoryRequirements(device_.handle(), block->buffer, &reqs);
    auto flags = vk_struct<VkMemoryAllocateFlagsInfo>(VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_FLAGS_INFO);
    flags.flags = VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT;
    auto info = vk_struct<VkMemoryAllocateInfo>(VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO);
    info.pNext = &flags;
    info.allocationSize = reqs.size;
    info.memoryTypeIndex = static_cast<std::uint32_t>(type_[static_cast<int>(kind)]);
    const VkResult result = vkAllocateMemory(device_.handle(), &info, nullptr, &block->memory);
    if (result == VK_SUCCESS) break;
    vkDestroyBuffer(device_.handle(), block->buffer, nullptr);
    // Out of memory for a whole block: try once more with just what was asked for.
    const bool oom = result == VK_ERROR_OUT_OF_DEVICE_MEMORY || result == VK_ERROR_OUT_OF_HOST_MEMORY;
    if (oom && bytes > size) {
      bytes = size;
      continue;
    }
    MF_CHECK(!oom, BudgetError, "[vulkan] out of ", kind_name(kind), " memory allocating ", size, " bytes for ",
             what, " (", bytes_in_use(MemoryKind::device), " bytes of device memory in use); lower the expert "
             "cache budget or the context length");
    check(result, "vkAllocateMemory");
  }
  block->size = bytes;
  try {
    check(vkBindBufferMemory(device_.handle(), block->buffer, block->memory, 0), "vkBindBufferMemory");
    auto address = vk_struct<VkBufferDeviceAddressInfo>(VK_STRUCTURE_TYPE_BUFFER_DEVICE_ADDRESS_INFO);
    address.buffer = block->buffer;
    block->address = vkGetBufferDeviceAddress(device_.handle(), &address);
    if (kind != MemoryKind::device) {
      void* p = nullptr;
      check(vkMapMemory(device_.handle(), block->memory, 0, VK_WHOLE_SIZE, 0, &p), "vkMapMemory");
      block->mapped = static_cast<std::byte*>(p);
    }
  } catch (...) {
    vkDestroyBuffer(device_.handle(), block->buffer, nullptr);
    vkFreeMemory(device_.handle(), block->memory, nullptr);
    throw;
  }
  block->id = next_id_++;
  block->free.emplace(0, bytes);
  blocks_.push_back(std::move(block));
  return blocks_.back().get();
}

void Memory::release_block(Block* block) {
  vkDestroyBuffer(device_.handle(), block->buffer, nullptr);
  vkFreeMemory(device_.handle(), block->memory, nullptr);
  std::erase_if(blocks_, [&](const std::unique_ptr<Block>& b) { return b.get() == block; });
}

Allocation Memory::allocate(MemoryKind kind, VkDeviceSize size, std::string_view what) {
  std::lock_guard lock(mutex_);
  size = round_up(std::max<VkDeviceSize>(size, 1), alignment_);
  Block* found = nullptr;
  VkDeviceSize offset = 0;
  for (auto& block : blocks_) {
    if (block->kind != kind) continue;
    for (const auto& [off, free_size] : block->free) {
      if (free_size >= size) {
        found = block.get(), offset = off;
        break;
      }
    }
    if (found != nullptr) break;
  }
  if (found == nullptr) found = new_block(kind, size, what), offset = 0;
  const auto it = found->free.find(offset);
  const VkDeviceSize rest = it->second - size;
  found->free.erase(it);
  if (rest > 0) found->free.emplace(offset + size, rest);
  in_use_[static_cast<int>(kind)] += size;
  return {found, offset, size};
}

void Memory::free(const Allocation& a) {
  if (!a) return;
  std::lock_guard lock(mutex_);
  Block* block = a.block;
  auto [it, inserted] = block->free.emplace(a.offset, a.size);
  MF_ASSERT(inserted, "double free at offset ", a.offset);
  if (auto next = std::next(it); next != block->free.end() && it->first + it->second == next->first) {
    it->second += next->second;
    block->free.erase(next);
  }
  if (it != block->free.begin()) {
    if (auto prev = std::prev(it); prev->first + prev->second == it->first) {
      prev->second += it->second;
      block->free.erase(it);
    }
  }
  in_use_[static_cast<int>(block->kind)] -= a.size;
  // An empty block goes back to the driver unless it is the first of its kind (kept for reuse).
  const bool empty = block->free.size() == 1 && block->free.begin()->second == block->size;
  const auto first = std::find_if(blocks_.begin(), blocks_.end(), [&](const auto& b) { return b->kind == block->kind; });
  if (empty && first->get() != block) release_block(block);
}

void Memory::free_after(const Allocation& a, std::uint64_t value) {
  std::lock_guard lock(mutex_);
  deferred_.emplace_back(value, a);
}

void Memory::collect(std::uint64_t completed) {
  std::vector<Allocation> ready;
  {
    std::lock_guard lock(mutex_);
    std::erase_if(deferred_, [&](const auto& d) {
      if (d.first > completed) return false;
      ready.push_back(d.second);
      return true;
    });
  }
  for (const Allocation& a : ready) free(a);
}

VkDeviceSize Memory::bytes_in_use(MemoryKind kind) const { return in_use_[static_cast<int>(kind)]; }

}  // namespace moeflux::backend::vk
