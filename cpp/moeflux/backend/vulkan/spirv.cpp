// Lookup of embedded SPIR-V variants by name (the table itself is generated).
#include "moeflux/backend/vulkan/spirv.h"

namespace moeflux::backend::vk {

const SpirvVariant* find_spirv(std::string_view name) {
  for (const SpirvVariant& v : spirv_variants()) {
    if (v.name == name) return &v;
  }
  return nullptr;
}

}  // namespace moeflux::backend::vk
