#version 450
// matmul_vec: y = x w^T for few rows of x (T <= MAX_T, decode). With USE_SUBGROUP a workgroup takes
// a row of w, vec4s of it at a time; else each workgroup takes ROWS rows, its invocations stride
// over K, and one workgroup reduction gives ROWS * T outputs.
// With IN_NORM (matmul_vec_norm) x is normalised in the product (common/input_norm.glsl). With
// ROUTE as well (matmul_vec_norm_route: router logits) the workgroup that finishes last, as a
// counter tells, routes every token (common/route_topk.glsl: moe_route's subgroup path, the same
// bits) and sets the counter back to 0: no step of its own for the routing.
// Bindings: 0 x f32 [T, K], 1 w WEIGHT_T [N, K] (with USE_SUBGROUP both also as vec4s, read so
// when K and both offsets are multiples of 4), [2 g NORM_T [K] with IN_NORM], then y f32 [T, ldy]
// (y += with accumulate), [with ROUTE: 4 routing uint [T, 2k], 5 counter uint].
// Defines: W_F32 | W_F16 | W_BF16; USE_SUBGROUP; IN_NORM with G_F32 | G_F16 | G_BF16 (needs
// USE_SUBGROUP); ROUTE (needs IN_NORM).
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
#ifdef IN_NORM
#ifndef USE_SUBGROUP
#error IN_NORM needs USE_SUBGROUP
#endif
#define NORM_BINDING 2
#include "common/input_norm.glsl"
#ifdef ROUTE
// The workgroup that finishes last reads every workgroup's logits: coherent, past L1.
layout(std430, binding = 3) coherent buffer Y { float y[]; };
layout(std430, binding = 4) writeonly buffer Routing { uint routing[]; };
layout(std430, binding = 5) coherent buffer Counter { uint counter[]; };
#define logits y
#include "common/route_topk.glsl"
shared bool finished_last;
#else
layout(std430, binding = 3) buffer Y { float y[]; };
#endif
#else
layout(std430, binding = 2) buffer Y { float y[]; };
#endif
#include "common/store_y.glsl"

#ifdef USE_SUBGROUP
layout(std430, binding = 0) readonly buffer X4 { vec4 x4[]; };
layout(std430, binding = 1) readonly buffer W4 { WEIGHT4_T w4[]; };
shared float partial[MAX_T][WG];  // a subgroup's sums, by subgroup
#ifdef IN_NORM
shared float partial_sq[MAX_T][WG];  // and its sums of x's squares
#endif

// x's four values at quad c of row t as the product reads them (normalised with IN_NORM, their
// squares into sum_sq).
vec4 x_quad(uint t, uint c, inout float sum_sq) {
  const vec4 v = x4[(p.x_offset + t * p.K) / 4 + c];
#ifdef IN_NORM
  return norm_in4(v, 4 * c, sum_sq);
#else
  return v;
#endif
}

// The workgroup takes a row of w at a time: with K = 2048 and 128 invocations, each loads its four
// vec4s of w and x at once (one memory round trip; a subgroup per row needed 16 with the router's
// 128 rows), then subgroup sums, added over the subgroups in order.
void main() {
  const uint K = p.K, tid = gl_LocalInvocationID.x, lane = gl_SubgroupInvocationID;
  const bool aligned = K % 4 == 0 && p.w_offset % 4 == 0 && p.x_offset % 4 == 0;
  const uint quads = aligned ? K / 4 : 0, wide = quads - quads % (4 * WG);  // quads in steps of four
  for (uint row = gl_WorkGroupID.x; row < p.N; row += gl_NumWorkGroups.x) {
    const uint wr = p.w_offset + row * K;
    float acc[MAX_T], sum_sq[MAX_T];  // sum_sq: of x's row, with IN_NORM
    [[unroll]] for (uint t = 0; t < MAX_T; ++t) {
      acc[t] = 0.0;
      sum_sq[t] = 0.0;
    }
    uint c = tid;
    for (; c < wide; c += 4 * WG) {
      vec4 wv[4];
      [[unroll]] for (uint i = 0; i < 4; ++i) wv[i] = weight4_to_vec4(w4[wr / 4 + c + i * WG]);
      [[unroll]] for (uint t = 0; t < MAX_T; ++t) {
        if (t >= p.T) break;
        acc[t] += (dot(wv[0], x_quad(t, c, sum_sq[t])) + dot(wv[1], x_quad(t, c + WG, sum_sq[t]))) +
                  (dot(wv[2], x_quad(t, c + 2 * WG, sum_sq[t])) + dot(wv[3], x_quad(t, c + 3 * WG, sum_sq[t])));
      }
    }
    for (; c < quads; c += WG) {
      const vec4 wv = weight4_to_vec4(w4[wr / 4 + c]);
      [[unroll]] for (uint t = 0; t < MAX_T; ++t) {
        if (t >= p.T) break;
        acc[t] += dot(wv, x_quad(t, c, sum_sq[t]));
      }
    }
    for (uint k = 4 * quads + tid; k < K; k += WG) {  // unaligned rows: one value at a time
      const float wk = weight_to_float(w[wr + k]);
      [[unroll]] for (uint t = 0; t < MAX_T; ++t) {
        if (t >= p.T) break;
        float xk = x[p.x_offset + t * K + k];
#ifdef IN_NORM
        sum_sq[t] += xk * xk;
        xk *= norm_weight(k);
#endif
        acc[t] += wk * xk;
      }
    }
    [[unroll]] for (uint t = 0; t < MAX_T; ++t) {
      if (t >= p.T) break;
      const float s = subgroupAdd(acc[t]);
      if (lane == 0) partial[t][gl_SubgroupID] = s;
#ifdef IN_NORM
      const float sq = subgroupAdd(sum_sq[t]);
      if (lane == 0) partial_sq[t][gl_SubgroupID] = sq;
#endif
    }
    barrier();
    if (tid < p.T) {
      float total = 0.0;
      for (uint i = 0; i < gl_NumSubgroups; ++i) total += partial[tid][i];
#ifdef IN_NORM
      float sq = 0.0;
      for (uint i = 0; i < gl_NumSubgroups; ++i) sq += partial_sq[tid][i];
      total *= inv_rms(sq);
#endif
      store_y(p.y_offset + tid * p.ldy + row, total);
    }
    barrier();  // partial is written again for the next row
  }
#ifdef ROUTE
  // Every invocation's logits before the count (release); the last workgroup reads them all.
  memoryBarrierBuffer();
  barrier();
  if (tid == 0) finished_last = atomicAdd(counter[p.counter_offset], 1u) == gl_NumWorkGroups.x - 1u;
  barrier();
  if (finished_last) {
    memoryBarrierBuffer();  // (acquire)
    if (gl_SubgroupID == 0) {
      for (uint t = 0; t < p.T; ++t) {
        uint expert;
        float weight;  // (not `w`: that is the router's weights)
        route_token(p.y_offset + t * p.ldy, p.N, p.k, p.normalize != 0u, expert, weight);
        if (lane < p.k) {
          const uint first = p.routing_offset + t * 2 * p.k;
          routing[first + lane] = expert;
          routing[first + p.k + lane] = floatBitsToUint(weight);
        }
      }
    }
    if (tid == 0) counter[p.counter_offset] = 0u;
  }
#endif
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
      if (first + r < p.N && t < p.T) store_y(p.y_offset + t * p.ldy + first + r, reduce_total[tid]);
    }
  }
}
#endif
