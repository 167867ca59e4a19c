#version 450
// matmul_vec_q: y = x w^T for T <= MAX_T rows of x (decode), w quantized. A team takes one row of
// w: a subgroup with USE_SUBGROUP (several rows per workgroup, no barriers), else the workgroup
// (shared-memory reduction); lanes stride over K's blocks of 8 columns, four in flight
// (common/block_dot.glsl).
// With IN_NORM (matmul_vec_q_norm) x is normalised in the product (common/input_norm.glsl).
// Bindings: 0 x f32 [T, K] (also read as vec4s: common/block_dot.glsl), 1 q_words, 2 s_words,
// 3 b_words (uint), [4 g NORM_T [K] with IN_NORM], then y f32 [T, ldy] (y += with accumulate).
// Defines: Q_BITS (8, 4, 3, 2); USE_SUBGROUP; IN_NORM with G_F32 | G_F16 | G_BF16 (needs
// USE_SUBGROUP).
#include "common/types.glsl"
#include "common/grid.glsl"
#define MAX_T 8
#ifndef USE_SUBGROUP
#define REDUCE_N MAX_T
#include "common/reduce.glsl"
#endif
#include "params/matmul_q.h"

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 0) readonly buffer X4 { vec4 x4[]; };
layout(std430, binding = 1) readonly buffer QW { uint q_words[]; };
layout(std430, binding = 2) readonly buffer SW { uint s_words[]; };
layout(std430, binding = 3) readonly buffer BW { uint b_words[]; };
#ifdef IN_NORM
#ifndef USE_SUBGROUP
#error IN_NORM needs USE_SUBGROUP
#endif
#define NORM_BINDING 4
#include "common/input_norm.glsl"
layout(std430, binding = 5) buffer Y { float y[]; };
#else
layout(std430, binding = 4) buffer Y { float y[]; };
#endif
#include "common/store_y.glsl"

#include "common/dequant.glsl"
#define BLOCK_X x
#define BLOCK_X4 x4
#include "common/block_dot.glsl"

#ifdef USE_SUBGROUP
#define TEAM_ID gl_SubgroupID
#define TEAM_COUNT gl_NumSubgroups
#define TEAM_LANE gl_SubgroupInvocationID
#define TEAM_SIZE gl_SubgroupSize
#else
#define TEAM_ID 0
#define TEAM_COUNT 1
#define TEAM_LANE gl_LocalInvocationID.x
#define TEAM_SIZE WG
#endif

// Block b of x's row t as the product reads it: normalised with IN_NORM (its squares into sum_sq).
void load_x(uint t, uint b, bool x_aligned, out vec4 lo, out vec4 hi, inout float sum_sq) {
  block_x(p.x_offset + t * p.K + b * 8, x_aligned, lo, hi);
#ifdef IN_NORM
  lo = norm_in4(lo, b * 8, sum_sq);
  hi = norm_in4(hi, b * 8 + 4, sum_sq);
#endif
}

void main() {
  const QuantRows r = QuantRows(p.q_first, p.s_first, p.b_first, p.row_words, p.groups, p.group_size, p.scale_bf16);
  const uint K = p.K, blocks = K / 8;
  const uint lane = TEAM_LANE;
  const bool x_aligned = (p.x_offset & 3u) == 0u;
  for (uint row = gl_WorkGroupID.x * TEAM_COUNT + TEAM_ID; row < p.N; row += gl_NumWorkGroups.x * TEAM_COUNT) {
    float acc[MAX_T], sum_sq[MAX_T];  // sum_sq: of x's row, with IN_NORM
    [[unroll]] for (uint t = 0; t < MAX_T; ++t) {
      acc[t] = 0.0;
      sum_sq[t] = 0.0;
    }
    // Four blocks in flight per lane (each load coalesced across the team), then one at a time.
    uint b = lane;
    for (; b + 3 * TEAM_SIZE < blocks; b += 4 * TEAM_SIZE) {
      QBlock w[4];
      [[unroll]] for (uint j = 0; j < 4; ++j) w[j] = load_qblock(r, row, b + j * TEAM_SIZE);
      [[unroll]] for (uint t = 0; t < MAX_T; ++t) {
        if (t >= p.T) break;
        float s = 0.0;
        [[unroll]] for (uint j = 0; j < 4; ++j) {
          vec4 lo, hi;
          load_x(t, b + j * TEAM_SIZE, x_aligned, lo, hi, sum_sq[t]);
          s += qblock_dot(w[j], lo, hi, block_sum(lo, hi));
        }
        acc[t] += s;
      }
    }
    for (; b < blocks; b += TEAM_SIZE) {
      const QBlock w = load_qblock(r, row, b);
      [[unroll]] for (uint t = 0; t < MAX_T; ++t) {
        if (t >= p.T) break;
        vec4 lo, hi;
        load_x(t, b, x_aligned, lo, hi, sum_sq[t]);
        acc[t] += qblock_dot(w, lo, hi, block_sum(lo, hi));
      }
    }
#ifdef USE_SUBGROUP
    [[unroll]] for (uint t = 0; t < MAX_T; ++t) {
      if (t >= p.T) break;
      float total = subgroupAdd(acc[t]);
#ifdef IN_NORM
      total *= inv_rms(subgroupAdd(sum_sq[t]));
#endif
      if (lane == t) store_y(p.y_offset + t * p.ldy + row, total);  // constant indices keep acc in registers
    }
#else
    workgroup_sums(acc);
    if (lane < p.T) store_y(p.y_offset + lane * p.ldy + row, reduce_total[lane]);
#endif
  }
}
