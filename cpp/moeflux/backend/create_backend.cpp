// create_backend: the one place that maps a backend name to an implementation.
#include "moeflux/backend/backend.h"
#include "moeflux/backend/cpu/cpu_backend.h"
#include "moeflux/backend/devices.h"
#include "moeflux/util/error.h"

namespace moeflux::backend {

std::unique_ptr<Backend> create_backend(const BackendOptions& options) {
  if (options.name == "cpu") return std::make_unique<cpu::CpuBackend>(options);
  if (options.name == "vulkan") return create_vulkan_backend(options);
  throw Unsupported(util::concat("[create_backend] unknown backend '", options.name,
                                 "'; available: cpu, vulkan"));
}

}  // namespace moeflux::backend
