#version 450
// add: out = a + b. Bindings: 0 a f32 [n], 1 b f32 [n], 2 out f32 [n] (may alias a or b).
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/add.h"

layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) writeonly buffer Out { float out_[]; };

void main() {
  for (uint i = global_index(); i < p.n; i += global_stride()) {
    out_[p.out_offset + i] = a[p.a_offset + i] + b[p.b_offset + i];
  }
}
