#version 450
// matmul_vec: y = x w^T for few rows of x (T <= MAX_T, decode). With USE_SUBGROUP a subgroup takes
// a row of w (several per workgroup, no barriers); else each workgroup takes ROWS rows, its
// invocations stride over K, and one workgroup reduction gives ROWS * T outputs.
// Bindings: 0 x f32 [T, K], 1 w WEIGHT_T [N, K], 2 y f32 [T, ldy].
// Defines: W_F32 | W_F16 | W_BF16; USE_SUBGROUP.
#include "common/types.glsl"
#include "common/grid.glsl"
#define MAX_T 8
#define ROWS 2
#ifndef USE_SUBGROUP
#define REDUCE_N (ROWS * MAX_T)
#include "common/reduce.glsl"
#endif
#include "params/matmul.h"

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer W { WEIGHT_T w[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };

#ifdef USE_SUBGROUP
// A subgroup per row of w: four independent loads per lane and step, the tail one at a time.
void main() {
  const uint K = p.K, lane = gl_SubgroupInvocationID, team = gl_SubgroupSize;
  const uint wide = K - K % (4 * team);
  for (uint row = gl_WorkGroupID.x * gl_NumSubgroups + gl_SubgroupID; row < p.N; row += gl_NumWorkGroups.x * gl_NumSubgroups) {
    const uint wr = p.w_offset + row * K;
    float acc[MAX_T];
    [[unroll]] for (uint t = 0; t < MAX_T; ++t) acc[t] = 0.0;
    for (uint k = 4 * lane; k < wide; k += 4 * team) {
      const float w0 = weight_to_float(w[wr + k]), w1 = weight_to_float(w[wr + k + 1]);
      const float w2 = weight_to_float(w[wr + k + 2]), w3 = weight_to_float(w[wr + k + 3]);
      [[unroll]] for (uint t = 0; t < MAX_T; ++t) {
        if (t >= p.T) break;
        const uint xi = p.x_offset + t * K + k;
        acc[t] += w0 * x[xi] + w1 * x[xi + 1] + w2 * x[xi + 2] + w3 * x[xi + 3];
      }
    }
    for (uint k = wide + lane; k < K; k += team) {
      const float wk = weight_to_float(w[wr + k]);
      [[unroll]] for (uint t = 0; t < MAX_T; ++t) {
        if (t >= p.T) break;
        acc[t] += wk * x[p.x_offset + t * K + k];
      }
    }
    [[unroll]] for (uint t = 0; t < MAX_T; ++t) {
      if (t >= p.T) break;
      const float total = subgroupAdd(acc[t]);
      if (lane == t) y[p.y_offset + t * p.ldy + row] = total;
    }
  }
}
#else
void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint K = p.K;
  for (uint first = gl_WorkGroupID.x * ROWS; first < p.N; first += gl_NumWorkGroups.x * ROWS) {
    float acc[REDUCE_N];
    for (uint j = 0; j < REDUCE_N; ++j) acc[j] = 0.0;
    for (uint k = tid; k < K; k += WG) {
      float xk[MAX_T];
      for (uint t = 0; t < MAX_T; ++t) xk[t] = t < p.T ? x[p.x_offset + t * K + k] : 0.0;
      for (uint r = 0; r < ROWS; ++r) {
        if (first + r >= p.N) break;
        const float wk = weight_to_float(w[p.w_offset + (first + r) * K + k]);
        for (uint t = 0; t < MAX_T && t < p.T; ++t) acc[r * MAX_T + t] += wk * xk[t];
      }
    }
    workgroup_sums(acc);
    if (tid < REDUCE_N) {
      const uint r = tid / MAX_T, t = tid % MAX_T;
      if (first + r < p.N && t < p.T) y[p.y_offset + t * p.ldy + first + r] = reduce_total[tid];
    }
  }
}
#endif
