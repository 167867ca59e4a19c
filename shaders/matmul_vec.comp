#version 450
// matmul_vec: y = x w^T for few rows of x (T <= MAX_T, decode). With USE_SUBGROUP a workgroup takes
// a row of w, vec4s of it at a time; else each workgroup takes ROWS rows, its invocations stride
// over K, and one workgroup reduction gives ROWS * T outputs.
// Bindings: 0 x f32 [T, K], 1 w WEIGHT_T [N, K] (with USE_SUBGROUP both also as vec4s, read so
// when K and both offsets are multiples of 4), 2 y f32 [T, ldy].
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
layout(std430, binding = 0) readonly buffer X4 { vec4 x4[]; };
layout(std430, binding = 1) readonly buffer W4 { WEIGHT4_T w4[]; };
shared float partial[MAX_T][WG];  // a subgroup's sums, by subgroup

// The workgroup takes a row of w at a time: with K = 2048 and 128 invocations, each loads its four
// vec4s of w and x at once (one memory round trip; a subgroup per row needed 16 with the router's
// 128 rows), then subgroup sums, added over the subgroups in order.
void main() {
  const uint K = p.K, tid = gl_LocalInvocationID.x, lane = gl_SubgroupInvocationID;
  const bool aligned = K % 4 == 0 && p.w_offset % 4 == 0 && p.x_offset % 4 == 0;
  const uint quads = aligned ? K / 4 : 0, wide = quads - quads % (4 * WG);  // quads in steps of four
  for (uint row = gl_WorkGroupID.x; row < p.N; row += gl_NumWorkGroups.x) {
    const uint wr = p.w_offset + row * K;
    float acc[MAX_T];
    [[unroll]] for (uint t = 0; t < MAX_T; ++t) acc[t] = 0.0;
    uint c = tid;
    for (; c < wide; c += 4 * WG) {
      vec4 wv[4];
      [[unroll]] for (uint i = 0; i < 4; ++i) wv[i] = weight4_to_vec4(w4[wr / 4 + c + i * WG]);
      [[unroll]] for (uint t = 0; t < MAX_T; ++t) {
        if (t >= p.T) break;
        const uint xq = (p.x_offset + t * K) / 4 + c;
        acc[t] += (dot(wv[0], x4[xq]) + dot(wv[1], x4[xq + WG])) +
                  (dot(wv[2], x4[xq + 2 * WG]) + dot(wv[3], x4[xq + 3 * WG]));
      }
    }
    for (; c < quads; c += WG) {
      const vec4 wv = weight4_to_vec4(w4[wr / 4 + c]);
      [[unroll]] for (uint t = 0; t < MAX_T; ++t) {
        if (t >= p.T) break;
        acc[t] += dot(wv, x4[(p.x_offset + t * K) / 4 + c]);
      }
    }
    for (uint k = 4 * quads + tid; k < K; k += WG) {  // unaligned rows: one value at a time
      const float wk = weight_to_float(w[wr + k]);
      [[unroll]] for (uint t = 0; t < MAX_T; ++t) {
        if (t >= p.T) break;
        acc[t] += wk * x[p.x_offset + t * K + k];
      }
    }
    [[unroll]] for (uint t = 0; t < MAX_T; ++t) {
      if (t >= p.T) break;
      const float s = subgroupAdd(acc[t]);
      if (lane == 0) partial[t][gl_SubgroupID] = s;
    }
    barrier();
    if (tid < p.T) {
      float total = 0.0;
      for (uint i = 0; i < gl_NumSubgroups; ++i) total += partial[tid][i];
      y[p.y_offset + tid * p.ldy + row] = total;
    }
    barrier();  // partial is written again for the next row
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
