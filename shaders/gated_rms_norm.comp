#version 450
// gated_rms_norm: out[r] = (w * (x[r] * (1 / sqrt(sum(x[r]^2) / C + eps)))) * silu(z[r]), one
// workgroup per row. Bindings: 0 x f32 [R, C], 1 z f32 [R, C], 2 w WEIGHT_T [C] (plain weight),
// 3 out f32 [R, C] (may alias x or z). Defines: W_F32 | W_F16 | W_BF16; USE_SUBGROUP.
#include "common/types.glsl"
#include "common/grid.glsl"
#define REDUCE_N 1
#include "common/reduce.glsl"
#include "params/gated_rms_norm.h"

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Z { float z[]; };
layout(std430, binding = 2) readonly buffer W { WEIGHT_T w[]; };
layout(std430, binding = 3) writeonly buffer Out { float out_[]; };

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint C = p.row_len;
  for (uint r = gl_WorkGroupID.x; r < p.n_rows; r += gl_NumWorkGroups.x) {
    const uint xr = p.x_offset + r * C, zr = p.z_offset + r * C;
    float sum[REDUCE_N];
    sum[0] = 0.0;
    for (uint c = tid; c < C; c += WG) sum[0] += x[xr + c] * x[xr + c];
    workgroup_sums(sum);
    const float inv_rms = 1.0 / sqrt(reduce_total[0] / float(C) + p.eps);
    const uint outr = p.out_offset + r * C;
    for (uint c = tid; c < C; c += WG) {
      const float zc = z[zr + c];
      out_[outr + c] = (weight_to_float(w[p.w_offset + c]) * (x[xr + c] * inv_rms)) * (zc / (1.0 + exp(-zc)));
    }
    barrier();  // in place: every x of this row is read before the next row's reduction writes
  }
}
