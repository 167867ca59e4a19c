#version 450
// fill: out = value (zeroing moe_experts' output when it does not accumulate).
// Bindings: 0 out f32 [n].
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/fill.h"

layout(std430, binding = 0) writeonly buffer Out { float out_[]; };

void main() {
  for (uint i = global_index(); i < p.n; i += global_stride()) out_[p.out_offset + i] = p.value;
}
