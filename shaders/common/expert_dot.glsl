// Dot products of expert weight rows with input vectors, the weights read by device address
// (common/types.glsl's USE_BUFFER_REFERENCE), by a team of lanes: a subgroup with USE_SUBGROUP
// (several rows per workgroup, no barriers), else the workgroup (shared-memory sums, REDUCE_N
// values). The including shader binds `vin` (float, also as `vin4`, vec4) and has MoePairParams `p`.
// lane_dots reads up to DOTS blocks at once, so the loads of all of them are in flight together.
// Defines: DOTS; Q_BITS (8, 4, 3, 2) or one of W_F32, W_F16, W_BF16.
#ifndef MOEFLUX_EXPERT_DOT_GLSL
#define MOEFLUX_EXPERT_DOT_GLSL

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

#ifdef Q_BITS
#define UNROLL 4  // quads per lane and block in flight
layout(buffer_reference, std430, buffer_reference_align = 4) readonly buffer WordRef { uint v[]; };
#include "common/quant_quads.glsl"
#else
layout(buffer_reference, std430, buffer_reference_align = 4) readonly buffer WeightRef { WEIGHT_T v[]; };
#endif

// Columns [4 quad, 4 quad + 4) of the input at element `base`.
vec4 vin_quad(uint base, uint quad) {
  const uint at = base + 4u * quad;
  return (at & 3u) == 0u ? vin4[at >> 2] : vec4(vin[at], vin[at + 1u], vin[at + 2u], vin[at + 3u]);
}

// This lane's shares of w_j[row] . vin[base_j, base_j + K) for the blocks j < DOTS whose address
// is not 0 (a block's packed q, then scales, then biases: format/quant.h). Quantized rows are read
// by quads (common/quant_quads.glsl; K a multiple of 32), float rows four values at a time.
void lane_dots(uvec2 address[DOTS], uint base[DOTS], uint row, out float d[DOTS]) {
  const uint lane = TEAM_LANE, S = TEAM_SIZE;
  for (uint j = 0; j < DOTS; ++j) d[j] = 0.0;
#ifdef Q_BITS
  const uint quads = p.K / 4u;
  for (uint q0 = lane; q0 < quads; q0 += UNROLL * S) {
    // Every weight load of the step first; quads past the row read its last quad, skipped below.
    uint lo[DOTS][UNROLL], hi[DOTS][UNROLL];
    float scale[DOTS][UNROLL], bias[DOTS][UNROLL];
    for (uint j = 0; j < DOTS; ++j) {
      if (address[j] == uvec2(0)) continue;
      WordRef w = WordRef(address[j]);
      for (uint u = 0; u < UNROLL; ++u) {
        const uint quad = min(q0 + u * S, quads - 1u);
        const uint at = row * p.row_words + quad_word(quad);
        lo[j][u] = w.v[at];
        hi[j][u] = quad_straddles(quad) ? w.v[at + 1u] : 0u;
        const uint g = row * p.groups + quad * 4u / p.group_size;
        scale[j][u] = quad_half(w.v[(p.s_first + g) >> 1], p.s_first + g, p.scale_bf16);
        bias[j][u] = quad_half(w.v[(p.b_first + g) >> 1], p.b_first + g, p.scale_bf16);
      }
    }
    for (uint u = 0; u < UNROLL; ++u) {
      const uint quad = q0 + u * S;
      if (quad >= quads) break;
      for (uint j = 0; j < DOTS; ++j) {
        if (address[j] == uvec2(0)) continue;
        const vec4 xv = vin_quad(base[j], quad);
        const vec4 qv = quad_values(lo[j][u], hi[j][u], quad_shift(quad));
        d[j] += scale[j][u] * dot(qv, xv) + bias[j][u] * ((xv.x + xv.y) + (xv.z + xv.w));
      }
    }
  }
#else
  // Four independent loads per block and step, then the tail one at a time.
  const uint K = p.K, wide = K - K % (4u * S), w0 = row * K;
  for (uint c = 4u * lane; c < wide; c += 4u * S) {
    for (uint j = 0; j < DOTS; ++j) {
      if (address[j] == uvec2(0)) continue;
      WeightRef w = WeightRef(address[j]);
      const float a0 = weight_to_float(w.v[w0 + c]), a1 = weight_to_float(w.v[w0 + c + 1u]);
      const float a2 = weight_to_float(w.v[w0 + c + 2u]), a3 = weight_to_float(w.v[w0 + c + 3u]);
      const uint b = base[j] + c;
      d[j] += a0 * vin[b] + a1 * vin[b + 1u] + a2 * vin[b + 2u] + a3 * vin[b + 3u];
    }
  }
  for (uint c = wide + lane; c < K; c += S) {
    for (uint j = 0; j < DOTS; ++j) {
      if (address[j] == uvec2(0)) continue;
      d[j] += weight_to_float(WeightRef(address[j]).v[w0 + c]) * vin[base[j] + c];
    }
  }
#endif
}

#endif
