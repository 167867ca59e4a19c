#version 450
// moe_gate_up: act[j, n] = silu(gate_e . x_t) * (up_e . x_t) for each pair j = t * k + s of the
// routed experts of T tokens (e = routing[t, s]) and each row n of the expert's gate and up
// (read by address from the layer's expert table; a pair whose table entry is 0 is skipped).
// Grid: x over rows (a team per row), y over pairs.
// With ROUTE (moe_gate_up_route, subgroups) the workgroup routes its token from the router's
// logits itself (common/route_topk.glsl: moe_route's subgroup path, the same bits), which saves
// moe_route's step; the workgroups of each token's first slot and first rows write its routing
// for moe_down and the caller.
// Bindings: 0 x f32 [T, K], 1 routing uint [T, 2k] (ROUTE: logits f32 [T, E]), 2 table uint
// [E, 6], 3 act f32 [T * k, N], [4 routing uint [T, 2k] with ROUTE].
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
layout(std430, binding = 2) readonly buffer Table { uint table[]; };
layout(std430, binding = 3) writeonly buffer Act { float act[]; };
#ifdef ROUTE
#ifndef USE_SUBGROUP
#error ROUTE needs USE_SUBGROUP
#endif
layout(std430, binding = 1) readonly buffer Logits { float logits[]; };
layout(std430, binding = 4) writeonly buffer Routing { uint routing[]; };
#include "common/route_topk.glsl"
shared uint routed_expert;

// The expert of token t's slot s: subgroup 0 routes the token, every invocation gets the choice.
uint route_slot(uint t, uint s) {
  barrier();  // the last pair's readers are done with routed_expert
  if (gl_SubgroupID == 0) {
    uint e;
    float w;
    route_token(p.logits_offset + t * p.E, p.E, p.k, p.normalize != 0u, e, w);
    const uint lane = gl_SubgroupInvocationID;
    if (lane == s) routed_expert = e;
    if (gl_WorkGroupID.x == 0 && s == 0 && lane < p.k) {
      const uint first = p.routing_offset + t * 2 * p.k;
      routing[first + lane] = e;
      routing[first + p.k + lane] = floatBitsToUint(w);
    }
  }
  barrier();
  return routed_expert;
}
#else
layout(std430, binding = 1) readonly buffer Routing { uint routing[]; };
#endif

#include "common/expert_dot.glsl"

void main() {
  for (uint pair = gl_WorkGroupID.y; pair < p.T * p.k; pair += gl_NumWorkGroups.y) {
    const uint t = pair / p.k, s = pair % p.k;
#ifdef ROUTE
    const uint e = route_slot(t, s);
#else
    const uint e = routing[p.routing_offset + t * 2 * p.k + s];
#endif
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
