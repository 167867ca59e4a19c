#include "moeflux/arch/blocks/router.h"

#include <algorithm>

namespace moeflux::arch {

std::vector<std::int32_t> unique_experts(std::span<const std::int32_t> experts) {
  std::vector<std::int32_t> unique(experts.begin(), experts.end());
  std::sort(unique.begin(), unique.end());
  unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
  return unique;
}

}  // namespace moeflux::arch
