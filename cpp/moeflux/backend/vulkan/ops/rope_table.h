// The cos and sin of RoPE for a run of positions, computed on the host exactly as the CPU backend
// computes them (float32 angle, then std::cos / std::sin), because GLSL's sin and cos are only
// accurate on [-pi, pi]. Shared by rope and attention_inputs.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "moeflux/backend/backend.h"

namespace moeflux::backend::vk {

// [2, T, rotary_dim / 2]: cos, then sin, each times attention_scaling.
std::vector<float> rope_table(std::span<const std::int32_t> positions, const RopeOptions& options);

// Checks rotary_dim and inv_freq against a head dimension D (ShapeError naming `op`).
void check_rope(const RopeOptions& options, std::int64_t D, const char* op);

}  // namespace moeflux::backend::vk
