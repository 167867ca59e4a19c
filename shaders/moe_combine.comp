#version 450
// moe_combine: out[t, h] = (out[t, h] when accumulating, else 0) + sum over j < k of
// weight[t, j] * y[row[t, j], h], j running over token t's experts in ascending order (the host
// orders them; rows of other batches are ~0u), so ascending batches give the bits of one call.
// Bindings: 0 y f32 [rows, H], 1 plan uint, 2 out f32 [T, H] (read and written).
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/moe_combine.h"

layout(std430, binding = 0) readonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer Plan { uint plan[]; };
layout(std430, binding = 2) buffer Out { float out_[]; };

void main() {
  for (uint t = gl_WorkGroupID.y; t < p.T; t += gl_NumWorkGroups.y) {
    for (uint h = global_index(); h < p.H; h += global_stride()) {
      const uint at = p.out_offset + t * p.H + h;
      precise float acc = p.accumulate != 0 ? out_[at] : 0.0;
      for (uint j = 0; j < p.k; ++j) {
        const uint row = plan[p.plan_offset + t * p.k + j];
        if (row == 0xFFFFFFFFu) continue;
        precise float term = uintBitsToFloat(plan[p.plan_offset + p.T * p.k + t * p.k + j]) * y[p.y_offset + row * p.H + h];
        acc = acc + term;
      }
      out_[at] = acc;
    }
  }
}
