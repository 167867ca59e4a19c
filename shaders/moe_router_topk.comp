#version 450
// moe_router_topk: for each of T tokens (decode), logits = x w^T over the E router rows, then the
// softmax top-k of moe_route (common/route_subgroup.glsl): one dispatch and no barrier between
// the router and the routing, where the two ops cost two dispatches and a barrier. One workgroup
// per token: x staged in shared memory; each subgroup takes ROWS rows at once, lanes over K four
// columns a step, four steps of loads in flight, each row's sum through subgroupAdd (a row's
// per-lane order is matmul_vec's); then the first subgroup routes from the shared logits.
// Bindings: 0 x f32 [T, K], 1 w WEIGHT_T [E, K], 2 logits f32 [T, E], 3 routing uint [T, 2k].
// Defines: W_F32 | W_F16 | W_BF16. Needs subgroup arithmetic.
#define USE_SUBGROUP
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/moe_router_topk.h"
#define MAX_K_X 4096     // x values staged (kRouterMaxHidden of ops/moe_pairs.cpp)
#define LANE_VALUES 16   // as moe_route.comp
#define MAX_E 512        // LANE_VALUES * 32 lanes: the most experts any subgroup size here routes
#define ROWS 4           // rows of w a subgroup reads at once
#define STEPS 4          // four-column steps of a lane in flight

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer W { WEIGHT_T w[]; };
layout(std430, binding = 2) writeonly buffer Logits { float logits_out[]; };
layout(std430, binding = 3) writeonly buffer Routing { uint routing[]; };

shared float x_sh[MAX_K_X];
shared float lg[MAX_E];

#define ROUTE_LOGIT(t, e) lg[e]
#include "common/route_subgroup.glsl"

void main() {
  const uint K = p.K, E = p.E, lane = gl_SubgroupInvocationID, S = gl_SubgroupSize;
  const uint NS = gl_NumSubgroups;
  const uint wide = K - K % (4u * S);  // whole four-column steps of every lane
  for (uint t = gl_WorkGroupID.x; t < p.T; t += gl_NumWorkGroups.x) {
    for (uint c = gl_LocalInvocationID.x; c < K; c += WG) x_sh[c] = x[p.x_offset + t * K + c];
    barrier();
    for (uint e0 = gl_SubgroupID; e0 < E; e0 += ROWS * NS) {
      float acc[ROWS];
      [[unroll]] for (uint r = 0; r < ROWS; ++r) acc[r] = 0.0;
      for (uint c0 = 4u * lane; c0 < wide; c0 += 4u * S * STEPS) {
        // Every weight load of STEPS steps of ROWS rows first (rows past E read row E - 1, steps
        // past the whole ones are skipped).
        vec4 wv[ROWS][STEPS];
        [[unroll]] for (uint r = 0; r < ROWS; ++r) {
          const uint wr = p.w_offset + min(e0 + r * NS, E - 1u) * K;
          [[unroll]] for (uint j = 0; j < STEPS; ++j) {
            const uint c = min(c0 + j * 4u * S, wide - 4u);
            wv[r][j] = vec4(weight_to_float(w[wr + c]), weight_to_float(w[wr + c + 1u]),
                            weight_to_float(w[wr + c + 2u]), weight_to_float(w[wr + c + 3u]));
          }
        }
        [[unroll]] for (uint j = 0; j < STEPS; ++j) {
          const uint c = c0 + j * 4u * S;
          if (c >= wide) break;
          [[unroll]] for (uint r = 0; r < ROWS; ++r) {
            acc[r] += wv[r][j].x * x_sh[c] + wv[r][j].y * x_sh[c + 1u] + wv[r][j].z * x_sh[c + 2u] +
                      wv[r][j].w * x_sh[c + 3u];
          }
        }
      }
      [[unroll]] for (uint r = 0; r < ROWS; ++r) {
        const uint e = e0 + r * NS;
        if (e >= E) break;  // uniform in the subgroup
        const uint wr = p.w_offset + e * K;
        for (uint c = wide + lane; c < K; c += S) acc[r] += weight_to_float(w[wr + c]) * x_sh[c];
        const float total = subgroupAdd(acc[r]);
        if (lane == 0u) {
          lg[e] = total;
          logits_out[p.logits_offset + t * E + e] = total;
        }
      }
    }
    barrier();
    if (gl_SubgroupID == 0u) route_in_subgroup(t);
    barrier();  // lg and x_sh are rewritten for the next token
  }
}
