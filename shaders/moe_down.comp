#version 450
// moe_down: out[t, n] (+)= sum over token t's pairs j = t * k + s, in ascending (expert, s) order,
// of weight[t, s] * (down_e[n] . act[j]); the sum starts from out[t, n] when accumulating, so
// experts split over ascending batches give the bits of one call. Pairs whose table entry is 0 are
// not this call's. Grid: x over rows (a team per row), y over tokens.
// Bindings: 0 act f32 [T * k, K], 1 routing uint [T, 2k], 2 table uint [E, 6],
// 3 out f32 [T, N] (read and written).
#define USE_BUFFER_REFERENCE
#include "common/types.glsl"
#include "common/grid.glsl"
#ifndef USE_SUBGROUP
#define REDUCE_N 1
#include "common/reduce.glsl"
#endif
#include "params/moe_pairs.h"
#define MAX_K 64

layout(std430, binding = 0) readonly buffer In { float vin[]; };
layout(std430, binding = 1) readonly buffer Routing { uint routing[]; };
layout(std430, binding = 2) readonly buffer Table { uint table[]; };
layout(std430, binding = 3) buffer Out { float out_[]; };

#include "common/expert_dot.glsl"

shared uint order[MAX_K];  // the token's slots in ascending (expert, slot) order

void main() {
  for (uint t = gl_WorkGroupID.y; t < p.T; t += gl_NumWorkGroups.y) {
    const uint route = p.routing_offset + t * 2 * p.k;
    barrier();
    if (gl_LocalInvocationID.x == 0) {  // insertion sort of k <= MAX_K slots
      for (uint s = 0; s < p.k; ++s) {
        uint j = s;
        for (; j > 0 && routing[route + order[j - 1]] > routing[route + s]; --j) order[j] = order[j - 1];
        order[j] = s;
      }
    }
    barrier();
    for (uint row = gl_WorkGroupID.x * TEAM_COUNT + TEAM_ID; row < p.N; row += gl_NumWorkGroups.x * TEAM_COUNT) {
      const uint at_out = p.out_offset + t * p.N + row;
      precise float acc = p.accumulate != 0 ? out_[at_out] : 0.0;
      for (uint j = 0; j < p.k; ++j) {
        const uint s = order[j], e = routing[route + s];
        if (e >= p.E) continue;
        const uint at = p.table_offset + e * 6;
        const uvec2 down = uvec2(table[at + 4], table[at + 5]);
        if (down == uvec2(0)) continue;
        use_block(down);
        float d = lane_dot(row, p.in_offset + (t * p.k + s) * p.K);
#ifdef USE_SUBGROUP
        d = subgroupAdd(d);
#else
        float v[1] = float[1](d);
        workgroup_sums(v);
        d = reduce_total[0];
#endif
        precise float term = uintBitsToFloat(routing[route + p.k + s]) * d;
        acc = acc + term;
      }
      if (TEAM_LANE == 0) out_[at_out] = acc;
    }
  }
}
