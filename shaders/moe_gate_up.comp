#version 450
// moe_gate_up: act[j, n] = silu(gate_e . x_t) * (up_e . x_t) for each pair j = t * k + s of the
// routed experts of T tokens (e = routing[t, s]) and each row n of the expert's gate and up
// (read by address from the layer's expert table; a pair whose table entry is 0 is skipped).
// Grid: x over rows (a team per row), y over pairs.
// Bindings: 0 x f32 [T, K], 1 routing uint [T, 2k], 2 table uint [E, 6], 3 act f32 [T * k, N].
#define USE_BUFFER_REFERENCE
#include "common/types.glsl"
#include "common/grid.glsl"
#ifndef USE_SUBGROUP
#define REDUCE_N 2
#include "common/reduce.glsl"
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
    for (uint row = gl_WorkGroupID.x * TEAM_COUNT + TEAM_ID; row < p.N; row += gl_NumWorkGroups.x * TEAM_COUNT) {
#ifdef Q_BITS
      const vec2 gu = lane_dot_pair(gate, up, row, base);
      float g = gu.x, u = gu.y;
#else
      use_block(gate);
      float g = lane_dot(row, base);
      use_block(up);
      float u = lane_dot(row, base);
#endif
#ifdef USE_SUBGROUP
      g = subgroupAdd(g);
      u = subgroupAdd(u);
      if (TEAM_LANE == 0) act[p.out_offset + pair * p.N + row] = (g / (1.0 + exp(-g))) * u;
#else
      float v[2] = float[2](g, u);
      workgroup_sums(v);
      if (TEAM_LANE == 0) {
        const float gs = reduce_total[0], us = reduce_total[1];
        act[p.out_offset + pair * p.N + row] = (gs / (1.0 + exp(-gs))) * us;
      }
#endif
    }
  }
}
