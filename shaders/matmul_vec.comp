#version 450
// matmul_vec: y = x w^T for few rows of x (T <= MAX_T, decode). With USE_SUBGROUP a subgroup takes
// a row of w (several per workgroup, no barriers) and reads it by vector loads; else each workgroup
// takes ROWS rows, its invocations stride over K, and one workgroup reduction gives ROWS * T outputs.
// Bindings: 0 x f32 [T, K] (also read as vec4), 1 w WEIGHT_T [N, K] (also read four values at a
// time), 2 y f32 [T, ldy].
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
#define UNROLL 8  // quads (4 consecutive columns) per lane in flight
layout(std430, binding = 0) readonly buffer X4 { vec4 x4[]; };
#ifdef W_F32
layout(std430, binding = 1) readonly buffer W4 { vec4 w4[]; };
#else
layout(std430, binding = 1) readonly buffer W4 { uvec2 w4[]; };  // four 16-bit values
#endif

// Columns [c, c + 4) of x at element `at`, and of w: as one vector load where the offset allows.
vec4 x_quad(uint at, bool aligned) {
  return aligned ? x4[at >> 2] : vec4(x[at], x[at + 1u], x[at + 2u], x[at + 3u]);
}
vec4 w_quad(uint at, bool aligned) {
  if (!aligned) {
    return vec4(weight_to_float(w[at]), weight_to_float(w[at + 1u]), weight_to_float(w[at + 2u]),
                weight_to_float(w[at + 3u]));
  }
#if defined(W_F32)
  return w4[at >> 2];
#else
  const uvec2 v = w4[at >> 2];
#if defined(W_F16)
  return vec4(unpackHalf2x16(v.x), unpackHalf2x16(v.y));
#else
  return uintBitsToFloat(uvec4(v.x << 16, v.x & 0xFFFF0000u, v.y << 16, v.y & 0xFFFF0000u));
#endif
#endif
}

// A subgroup per row of w; lane l reads the quads l, l + S, ...: each load instruction of the
// subgroup covers one contiguous span of w and of x, UNROLL loads of w per lane in flight; the
// columns past the last whole quad one at a time.
void main() {
  const uint K = p.K, quads = K / 4u, lane = gl_SubgroupInvocationID, S = gl_SubgroupSize;
  const bool x_aligned = (p.x_offset & 3u) == 0u && (K & 3u) == 0u, w_aligned = (p.w_offset & 3u) == 0u && (K & 3u) == 0u;
  for (uint row = gl_WorkGroupID.x * gl_NumSubgroups + gl_SubgroupID; row < p.N; row += gl_NumWorkGroups.x * gl_NumSubgroups) {
    const uint wr = p.w_offset + row * K;
    float acc[MAX_T];
    for (uint t = 0; t < MAX_T; ++t) acc[t] = 0.0;
    for (uint q0 = lane; q0 < quads; q0 += UNROLL * S) {
      vec4 wq[UNROLL];  // every weight load of the step first; quads past the row are skipped below
      for (uint u = 0; u < UNROLL; ++u) wq[u] = w_quad(wr + 4u * min(q0 + u * S, quads - 1u), w_aligned);
      for (uint t = 0; t < MAX_T; ++t) {
        if (t >= p.T) break;
        for (uint u = 0; u < UNROLL; ++u) {
          if (q0 + u * S >= quads) break;
          acc[t] += dot(wq[u], x_quad(p.x_offset + t * K + 4u * (q0 + u * S), x_aligned));
        }
      }
    }
    for (uint k = 4u * quads + lane; k < K; k += S) {
      const float wk = weight_to_float(w[wr + k]);
      for (uint t = 0; t < MAX_T; ++t) {
        if (t >= p.T) break;
        acc[t] += wk * x[p.x_offset + t * K + k];
      }
    }
    for (uint t = 0; t < MAX_T; ++t) {
      if (t >= p.T) break;
      const float total = subgroupAdd(acc[t]);
      if (lane == t) y[p.y_offset + t * p.ldy + row] = total;  // constant indices keep acc in registers
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
