// VkResult names and the error each failure becomes.
#include "moeflux/backend/vulkan/check.h"

#include "moeflux/util/error.h"

namespace moeflux::backend::vk {

std::string_view result_name(VkResult result) {
  switch (result) {
#define MF_RESULT(name) \
  case name:            \
    return #name;
    MF_RESULT(VK_SUCCESS)
    MF_RESULT(VK_NOT_READY)
    MF_RESULT(VK_TIMEOUT)
    MF_RESULT(VK_INCOMPLETE)
    MF_RESULT(VK_ERROR_OUT_OF_HOST_MEMORY)
    MF_RESULT(VK_ERROR_OUT_OF_DEVICE_MEMORY)
    MF_RESULT(VK_ERROR_INITIALIZATION_FAILED)
    MF_RESULT(VK_ERROR_DEVICE_LOST)
    MF_RESULT(VK_ERROR_MEMORY_MAP_FAILED)
    MF_RESULT(VK_ERROR_LAYER_NOT_PRESENT)
    MF_RESULT(VK_ERROR_EXTENSION_NOT_PRESENT)
    MF_RESULT(VK_ERROR_FEATURE_NOT_PRESENT)
    MF_RESULT(VK_ERROR_INCOMPATIBLE_DRIVER)
    MF_RESULT(VK_ERROR_TOO_MANY_OBJECTS)
    MF_RESULT(VK_ERROR_FORMAT_NOT_SUPPORTED)
    MF_RESULT(VK_ERROR_FRAGMENTED_POOL)
    MF_RESULT(VK_ERROR_UNKNOWN)
    MF_RESULT(VK_ERROR_OUT_OF_POOL_MEMORY)
    MF_RESULT(VK_ERROR_INVALID_EXTERNAL_HANDLE)
    MF_RESULT(VK_ERROR_FRAGMENTATION)
    MF_RESULT(VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS)
    MF_RESULT(VK_PIPELINE_COMPILE_REQUIRED)
#undef MF_RESULT
    default:
      return "an unknown VkResult";
  }
}

void check(VkResult result, std::string_view call) {
  if (result == VK_SUCCESS) return;
  const std::string what = util::concat("[vulkan] ", call, " failed: ", result_name(result), " (",
                                        static_cast<int>(result), ")");
  switch (result) {
    case VK_ERROR_OUT_OF_DEVICE_MEMORY:
    case VK_ERROR_OUT_OF_HOST_MEMORY:
      throw BudgetError(what + "; lower the expert cache budget or the context length");
    case VK_ERROR_DEVICE_LOST:
      throw DeviceError(what + "; the GPU reset or crashed, so this backend cannot continue");
    case VK_ERROR_INCOMPATIBLE_DRIVER:
      throw DeviceError(what + "; install a Vulkan 1.2 driver (Debian: mesa-vulkan-drivers) or "
                               "use backend='cpu'");
    default:
      throw DeviceError(what);
  }
}

}  // namespace moeflux::backend::vk
