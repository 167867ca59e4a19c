#version 450
// moe_gate_up: act[j, n] = silu(gate_e . x_t) * (up_e . x_t) for each pair j = t * k + s of the
// routed experts of T tokens (e = routing[t, s]) and each row n of the expert's gate and up
// (read by address from the layer's expert table; a pair whose table entry is 0 is skipped).
// Grid: x over rows (a team per TEAM_ROWS rows), y over pairs.
// Bindings: 0 x f32 [T, K], 1 routing uint [T, 2k], 2 table uint [E, 6], 3 act f32 [T * k, N].
#define USE_BUFFER_REFERENCE
#include "common/types.glsl"
#include "common/grid.glsl"
#ifndef USE_SUBGROUP
#define REDUCE_N 4
#include "common/reduce.glsl"
#endif
// Rows per team (kGateUpTeamRows of ops/moe_pairs.cpp): two quantized, each block of x then read
// once for the four dot products.
#ifdef Q_BITS
#define TEAM_ROWS 2
#else
#define TEAM_ROWS 1
#endif
#include "params/moe_pairs.h"

layout(std430, binding = 0) readonly buffer In { float vin[]; };
layout(std430, binding = 0) readonly buffer In4 { vec4 vin4[]; };
layout(std430, binding = 1) readonly buffer Routing { uint routing[]; };
layout(std430, binding = 2) readonly buffer Table { uint table[]; };
layout(std430, binding = 3) writeonly buffer Act { float act[]; };

#include "common/expert_dot.glsl"

void main() {
  for (uint pair = gl_WorkGroupID.y; pair < p.T * p.k; pair += gl_NumWorkGroups.y) {
    const uint t = pair / p.k, s = pair % p.k;
    const uint e = routing[p.routing_offset + t * 2 * p.k + s];
    if (e >= p.E) continue;
    const uint at = p.table_offset + e * 6;
    const uvec2 gate = uvec2(table[at], table[at + 1]), up = uvec2(table[at + 2], table[at + 3]);
    if (gate == uvec2(0) || up == uvec2(0)) continue;  // not this call's expert
    const uint base = p.in_offset + t * p.K;
    const uint team = gl_WorkGroupID.x * TEAM_COUNT + TEAM_ID, teams = gl_NumWorkGroups.x * TEAM_COUNT;
    for (uint row = team * TEAM_ROWS; row < p.N; row += teams * TEAM_ROWS) {
      // (gate, up) of row, then of row + 1 with TEAM_ROWS = 2
#ifdef Q_BITS
      vec4 gu = lane_dot_pairs(gate, up, row, base);
#else
      use_block(gate);
      const float g = lane_dot(row, base);
      use_block(up);
      vec4 gu = vec4(g, lane_dot(row, base), 0.0, 0.0);
#endif
#ifdef USE_SUBGROUP
      gu = subgroupAdd(gu);
#else
      float v[4] = float[4](gu.x, gu.y, gu.z, gu.w);
      workgroup_sums(v);
      gu = vec4(reduce_total[0], reduce_total[1], reduce_total[2], reduce_total[3]);
#endif
      const uint i = TEAM_LANE;
      if (i < TEAM_ROWS && row + i < p.N) {
        const float g = i == 0 ? gu.x : gu.z, u = i == 0 ? gu.y : gu.w;
        act[p.out_offset + pair * p.N + row + i] = (g / (1.0 + exp(-g))) * u;
      }
    }
  }
}
