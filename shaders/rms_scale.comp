#version 450
// rms_scale: out[r] = y[r] * (1 / sqrt(sum(x[r]^2) / H + eps)); one workgroup per row, rows in a
// grid-stride loop (the inputs of an attention projected from a folded norm: backend.h's
// FoldedNorm). Bindings: 0 x f32 [R, H], 1 y f32 [R, C], 2 out f32 [R, C] (may alias y: each
// element is read and written by one invocation). Defines: USE_SUBGROUP.
#include "common/types.glsl"
#include "common/grid.glsl"
#define REDUCE_N 1
#include "common/reduce.glsl"
#include "params/rms_scale.h"

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Y { float y[]; };
layout(std430, binding = 2) writeonly buffer Out { float out_[]; };

void main() {
  const uint tid = gl_LocalInvocationID.x;
  for (uint r = gl_WorkGroupID.x; r < p.n_rows; r += gl_NumWorkGroups.x) {
    float sum[1] = float[1](0.0);
    for (uint c = tid; c < p.H; c += WG) {
      const float v = x[p.x_offset + r * p.H + c];
      sum[0] += v * v;
    }
    workgroup_sums(sum);
    const float inv_rms = 1.0 / sqrt(reduce_total[0] / float(p.H) + p.eps);
    for (uint c = tid; c < p.C; c += WG) out_[p.out_offset + r * p.C + c] = y[p.y_offset + r * p.C + c] * inv_rms;
  }
}
