// Experts of one MoE layer as the expert store hands them over: named (layer, expert), f32, bf16
// or q4 (groups of 32), gate and up [I, H], down [H, I], random values from a seed; and the layout
// that configure_expert_cache takes. Shared by the device-tier and routing tests.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "vulkan_harness.h"

namespace moeflux::test {

struct NamedExperts {
  int n_experts, layer;
  format::Dtype dtype;
  std::vector<StoredWeight> floats;
  std::vector<QuantizedWeight> quantized;

  NamedExperts(format::Dtype d, std::int64_t H, std::int64_t I, int n, int layer_index, unsigned seed)
      : n_experts(n), layer(layer_index), dtype(d) {
    for (int i = 0; i < 3 * n; ++i) {
      const backend::Shape shape = i % 3 < 2 ? backend::Shape{I, H} : backend::Shape{H, I};
      const auto v = random_values(static_cast<std::size_t>(H * I), seed + static_cast<unsigned>(i), -0.5f, 0.5f);
      if (d == format::Dtype::q4) {
        quantized.emplace_back(format::QuantParams{.bits = 4, .group_size = 32, .scale_dtype = format::Dtype::bf16}, shape, v);
      } else {
        floats.emplace_back(d, shape, v);
      }
    }
  }
  format::TensorView view(int i) const {
    const auto at = static_cast<std::size_t>(i);
    return dtype == format::Dtype::q4 ? quantized[at].view("e") : floats[at].view();
  }
  std::vector<backend::ExpertWeights> weights(std::span<const std::int32_t> ids) const {
    std::vector<backend::ExpertWeights> out;
    for (const std::int32_t e : ids) out.push_back({view(3 * e), view(3 * e + 1), view(3 * e + 2), layer, e});
    return out;
  }
  backend::ExpertCacheLayout layout(int k) const { return {k, {{layer, n_experts, {view(0), view(1), view(2)}}}}; }
};

}  // namespace moeflux::test
