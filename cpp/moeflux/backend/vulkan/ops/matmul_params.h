// The parameters of the float products (matmul_vec, its _norm and _norm_route variants,
// matmul_tiled) over windows of x, w and y; the variants' own fields stay 0 for the caller to set.
#pragma once

#include <cstdint>

#include "moeflux/backend/backend.h"
#include "moeflux/backend/vulkan/ops/tensor_access.h"
#include "params/matmul.h"

namespace moeflux::backend::vk {

// T rows of x [T, K] times N rows of w into y (rows ldy apart); with `norm`, x normalised in the
// product with the norm weight at g_offset.
inline params::MatmulParams matmul_params(const Window& x, const Window& w, const Window& y, std::int64_t T,
                                          std::int64_t K, std::int64_t N, std::int64_t ldy, bool accumulate,
                                          const NormOptions* norm = nullptr, std::uint32_t g_offset = 0) {
  params::MatmulParams p{};
  p.x_offset = x.first;
  p.w_offset = w.first;
  p.y_offset = y.first;
  p.T = static_cast<std::uint32_t>(T);
  p.K = static_cast<std::uint32_t>(K);
  p.N = static_cast<std::uint32_t>(N);
  p.ldy = static_cast<std::uint32_t>(ldy);
  p.accumulate = accumulate ? 1u : 0u;
  if (norm != nullptr) {
    p.g_offset = g_offset;
    p.eps = norm->eps;
    p.zero_centered = norm->zero_centered ? 1u : 0u;
  }
  return p;
}

}  // namespace moeflux::backend::vk
