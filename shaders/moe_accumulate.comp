#version 450
// moe_accumulate: out[token_r] += y[r] * weight_r for one expert's rows, whose tokens are distinct
// within a dispatch (the host splits them otherwise), so no two invocations add to one element.
// Bindings: 0 y f32 [n_rows, cols], 1 route uint [n_rows, 2] (token, weight bits),
// 2 out f32 [T, cols] (read and written).
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/moe_accumulate.h"

layout(std430, binding = 0) readonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer Route { uint route[]; };
layout(std430, binding = 2) buffer Out { float out_[]; };

void main() {
  for (uint r = gl_WorkGroupID.y; r < p.n_rows; r += gl_NumWorkGroups.y) {
    const uint token = route[2 * (p.route_offset + r)] - p.row_begin;  // wraps when below the window
    if (token >= p.row_count) continue;
    const float weight = uintBitsToFloat(route[2 * (p.route_offset + r) + 1]);
    for (uint c = global_index(); c < p.cols; c += global_stride()) {
      // y * weight rounded, then added (no fused multiply-add), as the CPU's loop computes it
      precise float term = y[p.y_offset + r * p.cols + c] * weight;
      const uint at = p.out_offset + token * p.cols + c;
      out_[at] = out_[at] + term;
    }
  }
}
