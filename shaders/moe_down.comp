#version 450
// moe_down: out[t, n] (+)= sum over token t's pairs j = t * k + s, in ascending (expert, s) order,
// of weight[t, s] * (down_e[n] . act[j]); the sum starts from out[t, n] when accumulating, so
// experts split over ascending batches give the bits of one call. Pairs whose table entry is 0 are
// not this call's. Grid: x over rows (a team per row), y over tokens.
// Bindings: 0 act f32 [T * k, K] (also read as vec4), 1 routing uint [T, 2k], 2 table uint [E, 6],
// 3 out f32 [T, N] (read and written).
#define USE_BUFFER_REFERENCE
#include "common/types.glsl"
#include "common/grid.glsl"
#ifndef USE_SUBGROUP
#define REDUCE_N 4  // DOTS
#include "common/reduce.glsl"
#endif
#include "params/moe_pairs.h"
#define MAX_K 64
#define DOTS 4  // experts whose rows are read together

layout(std430, binding = 0) readonly buffer In { float vin[]; };
layout(std430, binding = 0) readonly buffer In4 { vec4 vin4[]; };
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
      for (uint j0 = 0; j0 < p.k; j0 += DOTS) {
        uvec2 address[DOTS];
        uint base[DOTS], slot[DOTS];
        for (uint j = 0; j < DOTS; ++j) {
          slot[j] = j0 + j < p.k ? order[j0 + j] : 0u;
          const uint e = routing[route + slot[j]], at = p.table_offset + e * 6;
          address[j] = j0 + j < p.k && e < p.E ? uvec2(table[at + 4], table[at + 5]) : uvec2(0);
          base[j] = p.in_offset + (t * p.k + slot[j]) * p.K;
        }
        float d[DOTS];
        lane_dots(address, base, row, d);
#ifndef USE_SUBGROUP
        workgroup_sums(d);
#endif
        for (uint j = 0; j < DOTS; ++j) {  // in ascending (expert, slot) order
          if (address[j] == uvec2(0)) continue;
#ifdef USE_SUBGROUP
          const float dot_j = subgroupAdd(d[j]);
#else
          const float dot_j = reduce_total[j];
#endif
          precise float term = uintBitsToFloat(routing[route + p.k + slot[j]]) * dot_j;
          acc = acc + term;
        }
      }
      if (TEAM_LANE == 0) out_[at_out] = acc;
    }
  }
}
