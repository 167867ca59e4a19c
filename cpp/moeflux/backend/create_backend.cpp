// create_backend: the one place that maps a backend name to an implementation.
// Only "cpu" exists for now; the Vulkan backend registers here when it lands.
#include "moeflux/backend/backend.h"
#include "moeflux/backend/cpu/cpu_backend.h"
#include "moeflux/util/error.h"

namespace moeflux::backend {

std::unique_ptr<Backend> create_backend(const BackendOptions& options) {
  if (options.name == "cpu") return std::make_unique<cpu::CpuBackend>(options);
  throw Unsupported(util::concat("[create_backend] unknown backend '", options.name,
                                 "'; available: cpu"));
}

}  // namespace moeflux::backend
