#version 450
// swiglu: out = silu(gate) * up, silu(g) = g / (1 + exp(-g)) as PyTorch computes it in float32.
// Bindings: 0 gate f32 [n], 1 up f32 [n], 2 out f32 [n] (may alias gate or up).
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/swiglu.h"

layout(std430, binding = 0) readonly buffer Gate { float gate[]; };
layout(std430, binding = 1) readonly buffer Up { float up[]; };
layout(std430, binding = 2) writeonly buffer Out { float out_[]; };

void main() {
  for (uint i = global_index(); i < p.n; i += global_stride()) {
    const float g = gate[p.gate_offset + i];
    out_[p.out_offset + i] = (g / (1.0 + exp(-g))) * up[p.up_offset + i];
  }
}
