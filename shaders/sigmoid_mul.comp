#version 450
// sigmoid_mul: out[t, c] = sigmoid(gate[t, c / (C / G)]) * x[t, c], sigmoid(g) = 1 / (1 + exp(-g)).
// Bindings: 0 gate f32 [T, G], 1 x f32 [T, C], 2 out f32 [T, C] (may alias x).
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/sigmoid_mul.h"

layout(std430, binding = 0) readonly buffer Gate { float gate[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) writeonly buffer Out { float out_[]; };

void main() {
  const uint n = p.T * p.C, group = p.C / p.G;
  for (uint i = global_index(); i < n; i += global_stride()) {
    const uint t = i / p.C, c = i % p.C;
    const float s = 1.0 / (1.0 + exp(-gate[p.gate_offset + t * p.G + c / group]));
    out_[p.out_offset + i] = s * x[p.x_offset + i];
  }
}
