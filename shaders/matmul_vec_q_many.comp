#version 450
// matmul_vec_q_many: y_i = x w_i^T for up to four quantized weights of one form sharing x [T, K],
// T <= MAX_T (decode), in one dispatch: the rows of every w_i form one grid, and a team (as in
// matmul_vec_q) takes a row, reading its weight by device address. Each row's arithmetic is
// matmul_vec_q's (common/matvec_q_row.glsl), so each y_i has the bits matmul_vec_q gives it.
// Bindings: 0 x f32 [T, K] (also read as vec4s), 1..4 y_0..y_3 f32 [T, N_i] (an unused slot may
// repeat another: nothing is written to it). Defines: Q_BITS (8, 4, 3, 2); USE_SUBGROUP.
#define USE_BUFFER_REFERENCE
#include "common/types.glsl"
#include "common/grid.glsl"
#define MAX_T 8
#ifndef USE_SUBGROUP
#define REDUCE_N MAX_T
#include "common/reduce.glsl"
#endif
#include "params/matmul_vec_q_many.h"

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 0) readonly buffer X4 { vec4 x4[]; };
layout(std430, binding = 1) writeonly buffer Y0 { float y0[]; };
layout(std430, binding = 2) writeonly buffer Y1 { float y1[]; };
layout(std430, binding = 3) writeonly buffer Y2 { float y2[]; };
layout(std430, binding = 4) writeonly buffer Y3 { float y3[]; };

layout(buffer_reference, std430, buffer_reference_align = 4) readonly buffer WordRef { uint v[]; };
WordRef w_words;  // the weight of the team's row: packed q, then scales, then biases (format/quant.h)
#define q_words w_words.v
#define s_words w_words.v
#define b_words w_words.v
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
#include "common/matvec_q_row.glsl"

// Row `row` of the grid as (weight, row of that weight): weights in order, N_i rows each.
uvec2 weight_row(uint row) {
  if (row < p.N0) return uvec2(0, row);
  row -= p.N0;
  if (row < p.N1) return uvec2(1, row);
  row -= p.N1;
  if (row < p.N2) return uvec2(2, row);
  return uvec2(3, row - p.N2);
}

void store(uint weight, uint t, uint row, float value) {
  if (weight == 0) {
    y0[p.y_offset0 + t * p.N0 + row] = value;
  } else if (weight == 1) {
    y1[p.y_offset1 + t * p.N1 + row] = value;
  } else if (weight == 2) {
    y2[p.y_offset2 + t * p.N2 + row] = value;
  } else {
    y3[p.y_offset3 + t * p.N3 + row] = value;
  }
}

void main() {
  const uint rows = p.N0 + p.N1 + p.N2 + p.N3;
  const uint lane = TEAM_LANE;
  const bool x_aligned = (p.x_offset & 3u) == 0u;
  for (uint grid_row = gl_WorkGroupID.x * TEAM_COUNT + TEAM_ID; grid_row < rows;
       grid_row += gl_NumWorkGroups.x * TEAM_COUNT) {
    const uvec2 at = weight_row(grid_row);
    const uint weight = at.x, row = at.y;
    QuantRows r = QuantRows(0, p.s_first0, p.b_first0, p.row_words, p.groups, p.group_size, p.scale_bf16);
    if (weight == 0) {
      w_words = WordRef(uvec2(p.address0_lo, p.address0_hi));
    } else if (weight == 1) {
      w_words = WordRef(uvec2(p.address1_lo, p.address1_hi));
      r.s_first = p.s_first1, r.b_first = p.b_first1;
    } else if (weight == 2) {
      w_words = WordRef(uvec2(p.address2_lo, p.address2_hi));
      r.s_first = p.s_first2, r.b_first = p.b_first2;
    } else {
      w_words = WordRef(uvec2(p.address3_lo, p.address3_hi));
      r.s_first = p.s_first3, r.b_first = p.b_first3;
    }
    float acc[MAX_T];
    matvec_q_row(r, row, p.x_offset, p.K, p.T, x_aligned, acc);
#ifdef USE_SUBGROUP
    [[unroll]] for (uint t = 0; t < MAX_T; ++t) {
      if (t >= p.T) break;
      const float total = subgroupAdd(acc[t]);
      if (lane == t) store(weight, t, row, total);  // constant indices keep acc in registers
    }
#else
    workgroup_sums(acc);
    if (lane < p.T) store(weight, lane, row, reduce_total[lane]);
#endif
  }
}
