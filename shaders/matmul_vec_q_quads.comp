#version 450
// matmul_vec_q_quads: y = x w^T for T <= MAX_T rows of x (decode), w quantized and with many rows
// (the LM head). A subgroup takes ROWS rows of w at a time (no barriers). Lanes read the rows by
// quads (common/quant_quads.glsl), UNROLL quads per lane in flight; each quad adds scale * (q . x) + bias * sum(x), the group's affine terms
// factored out as the CPU kernels factor them, and sum(x) is shared by the ROWS rows.
// Bindings: 0 x f32 [T, K] (also read as vec4 when x_offset is a multiple of 4), 1 q_words,
// 2 s_words, 3 b_words (uint), 4 y f32 [T, ldy]. Defines: Q_BITS (8, 4, 3, 2). Needs subgroup
// arithmetic.
#define USE_SUBGROUP
#include "common/types.glsl"
#include "common/grid.glsl"
#define MAX_T 8
#define ROWS 2
#define UNROLL 4
#include "params/matmul_q.h"

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 0) readonly buffer X4 { vec4 x4[]; };
layout(std430, binding = 1) readonly buffer QW { uint q_words[]; };
layout(std430, binding = 2) readonly buffer SW { uint s_words[]; };
layout(std430, binding = 3) readonly buffer BW { uint b_words[]; };
layout(std430, binding = 4) buffer Y { float y[]; };
#include "common/store_y.glsl"

#include "common/dequant.glsl"
#include "common/quant_quads.glsl"

// Columns [4 quad, 4 quad + 4) of x row t.
vec4 x_quad(uint t, uint quad, bool aligned) {
  const uint at = p.x_offset + t * p.K + 4u * quad;
  return aligned ? x4[at >> 2] : vec4(x[at], x[at + 1u], x[at + 2u], x[at + 3u]);
}

void main() {
  const uint quads = p.K / 4u, lane = gl_SubgroupInvocationID, S = gl_SubgroupSize;
  const QuantRows rows =
      QuantRows(p.q_first, p.s_first, p.b_first, p.row_words, p.groups, p.group_size, p.scale_bf16);
  const bool aligned = (p.x_offset & 3u) == 0u;
  for (uint row0 = (gl_WorkGroupID.x * gl_NumSubgroups + gl_SubgroupID) * ROWS; row0 < p.N;
       row0 += gl_NumWorkGroups.x * gl_NumSubgroups * ROWS) {
    float acc[ROWS][MAX_T];
    for (uint r = 0; r < ROWS; ++r) {
      for (uint t = 0; t < MAX_T; ++t) acc[r][t] = 0.0;
    }
    for (uint q0 = lane; q0 < quads; q0 += UNROLL * S) {
      // Every weight load of the step first (rows past N read the last row and are not stored;
      // quads past the row read its last quad and are skipped below).
      uint lo[ROWS][UNROLL], hi[ROWS][UNROLL];
      float scale[ROWS][UNROLL], bias[ROWS][UNROLL];
      for (uint r = 0; r < ROWS; ++r) {
        const uint row = min(row0 + r, p.N - 1u);
        for (uint u = 0; u < UNROLL; ++u) {
          const uint quad = min(q0 + u * S, quads - 1u);
          const uint at = p.q_first + row * p.row_words + quad_word(quad);
          lo[r][u] = q_words[at];
          hi[r][u] = quad_straddles(quad) ? q_words[at + 1u] : 0u;
          const uint g = quad * 4u / p.group_size;
          scale[r][u] = dequant_scale(rows, row, g);
          bias[r][u] = dequant_bias(rows, row, g);
        }
      }
      for (uint t = 0; t < MAX_T; ++t) {
        if (t >= p.T) break;
        for (uint u = 0; u < UNROLL; ++u) {
          const uint quad = q0 + u * S;
          if (quad >= quads) break;
          const vec4 xv = x_quad(t, quad, aligned);
          const float xsum = (xv.x + xv.y) + (xv.z + xv.w);
          for (uint r = 0; r < ROWS; ++r) {
            const vec4 qv = quad_values(lo[r][u], hi[r][u], quad_shift(quad));
            acc[r][t] += scale[r][u] * dot(qv, xv) + bias[r][u] * xsum;
          }
        }
      }
    }
    for (uint r = 0; r < ROWS; ++r) {
      for (uint t = 0; t < MAX_T; ++t) {
        if (t >= p.T) break;
        const float total = subgroupAdd(acc[r][t]);  // constant indices keep acc in registers
        if (lane == 0u && row0 + r < p.N) store_y(p.y_offset + t * p.ldy + row0 + r, total);
      }
    }
  }
}
