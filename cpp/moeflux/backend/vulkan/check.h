// check(): the one place a VkResult becomes an error. Every Vulkan call that returns a VkResult
// goes through it, so a failure names the call and the result (DeviceError, or BudgetError when
// the device ran out of memory).
#pragma once

#include <vulkan/vulkan.h>

#include <string_view>

namespace moeflux::backend::vk {

std::string_view result_name(VkResult result);

// Throws unless result is VK_SUCCESS; `call` names the Vulkan function ("vkCreateDevice").
void check(VkResult result, std::string_view call);

}  // namespace moeflux::backend::vk
