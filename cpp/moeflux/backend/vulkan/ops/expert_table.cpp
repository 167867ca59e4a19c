#include "moeflux/backend/vulkan/ops/expert_table.h"

#include "moeflux/backend/vulkan/context.h"

namespace moeflux::backend::vk {

std::array<std::uint32_t, 6> table_entry(const std::array<Tensor, 3>& blocks) {
  std::array<std::uint32_t, 6> words{};
  for (std::size_t r = 0; r < 3; ++r) {
    const auto& storage = static_cast<const VulkanStorage&>(*blocks[r].storage());
    const VkDeviceAddress address = storage.allocation().address();
    words[2 * r] = static_cast<std::uint32_t>(address);
    words[2 * r + 1] = static_cast<std::uint32_t>(address >> 32);
  }
  return words;
}

std::vector<Binding> block_ranges(std::span<const std::array<Tensor, 3>> experts) {
  std::vector<Binding> ranges;
  for (const auto& blocks : experts) {
    for (const Tensor& t : blocks) {
      const Allocation& a = static_cast<const VulkanStorage&>(*t.storage()).allocation();
      ranges.push_back({a.block, a.offset, a.size});
    }
  }
  return ranges;
}

}  // namespace moeflux::backend::vk
