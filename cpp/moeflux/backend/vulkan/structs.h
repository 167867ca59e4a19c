// vk_struct<T>(type): a zeroed Vulkan structure with its sType set, the way every create-info and
// query structure here starts (aggregate init with only sType would trip -Wmissing-field-initializers).
#pragma once

#include <vulkan/vulkan.h>

namespace moeflux::backend::vk {

template <typename T>
T vk_struct(VkStructureType type) {
  T value{};
  value.sType = type;
  return value;
}

}  // namespace moeflux::backend::vk
