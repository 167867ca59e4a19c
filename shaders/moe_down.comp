#version 450
// moe_down: out[t, n] (+)= sum over token t's pairs j = t * k + s, in ascending (expert, s) order,
// of weight[t, s] * (down_e[n] . act[j]); the sum starts from out[t, n] when accumulating, so
// experts split over ascending batches give the bits of one call. Pairs whose table entry is 0 are
// not this call's. Grid: x over rows (a team per row: with subgroups, lanes split over the experts),
// y over tokens.
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
layout(std430, binding = 0) readonly buffer In4 { vec4 vin4[]; };
layout(std430, binding = 1) readonly buffer Routing { uint routing[]; };
layout(std430, binding = 2) readonly buffer Table { uint table[]; };
layout(std430, binding = 3) buffer Out { float out_[]; };

#include "common/expert_dot.glsl"

shared uint order[MAX_K];  // the token's slots in ascending (expert, slot) order
#ifdef USE_SUBGROUP
shared float part[WG];     // a lane's share of its expert's dot product, by invocation
#endif

// The down block of the token's slot s (routing at `route`), or 0 when it is not this call's.
uvec2 down_block(uint route, uint s) {
  const uint e = routing[route + s];
  if (e >= p.E) return uvec2(0);
  const uint at = p.table_offset + e * 6;
  return uvec2(table[at + 4], table[at + 5]);
}

void main() {
#ifdef USE_SUBGROUP
  // A subgroup takes a row of every expert of the token at once, in rounds of R experts with L lanes
  // each (R: k rounded up to a power of two, at most the subgroup), so all their loads are in
  // flight together; the lanes' shares meet in shared memory and one lane adds each expert's dot
  // product in ascending order, so a dot product's bits never depend on the other experts.
  const uint S = gl_SubgroupSize, lane = gl_SubgroupInvocationID, me = gl_SubgroupID * S;
  uint R = 1;
  while (R < p.k && R < S) R <<= 1;
  const uint L = S / R, g = lane / L, u = lane % L;
#endif
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
#ifdef USE_SUBGROUP
      for (uint j0 = 0; j0 < p.k; j0 += R) {
        float d = 0.0;
        if (j0 + g < p.k) {
          const uint s = order[j0 + g];
          const uvec2 down = down_block(route, s);
          if (down != uvec2(0)) {
            use_block(down);
            d = lane_dot_at(row, p.in_offset + (t * p.k + s) * p.K, u, L);
          }
        }
        part[me + lane] = d;
        subgroupMemoryBarrierShared();
        subgroupBarrier();
        if (lane == 0) {
          for (uint h = 0; h < R && j0 + h < p.k; ++h) {
            const uint s = order[j0 + h];
            if (down_block(route, s) == uvec2(0)) continue;
            float dot_sum = 0.0;
            for (uint v = 0; v < L; ++v) dot_sum += part[me + h * L + v];
            precise float term = uintBitsToFloat(routing[route + p.k + s]) * dot_sum;
            acc = acc + term;
          }
        }
        subgroupBarrier();  // part is written again next round
      }
      if (lane == 0) out_[at_out] = acc;
#else
      for (uint j = 0; j < p.k; ++j) {
        const uint s = order[j];
        const uvec2 down = down_block(route, s);
        if (down == uvec2(0)) continue;
        use_block(down);
        float v[1] = float[1](lane_dot(row, p.in_offset + (t * p.k + s) * p.K));
        workgroup_sums(v);
        precise float term = uintBitsToFloat(routing[route + p.k + s]) * reduce_total[0];
        acc = acc + term;
      }
      if (TEAM_LANE == 0) out_[at_out] = acc;
#endif
    }
  }
}
