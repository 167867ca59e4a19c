// Stands in for backend/vulkan/ when moeflux is built without Vulkan (cmake/vulkan.cmake): both
// entry points say what was missing at build time.
#include "moeflux/backend/devices.h"
#include "moeflux/util/error.h"

#ifndef MOEFLUX_VULKAN_MISSING
#define MOEFLUX_VULKAN_MISSING "moeflux was built without Vulkan"
#endif

namespace moeflux::backend {

std::vector<DeviceInfo> list_devices() {
  throw Unsupported("[devices] " MOEFLUX_VULKAN_MISSING
                    "; install it and rebuild to use Vulkan devices, or use backend='cpu'");
}

std::unique_ptr<Backend> create_vulkan_backend(const BackendOptions&) {
  throw Unsupported("[create_backend] the vulkan backend is not available: " MOEFLUX_VULKAN_MISSING
                    "; install it and rebuild, or use backend='cpu'");
}

}  // namespace moeflux::backend
