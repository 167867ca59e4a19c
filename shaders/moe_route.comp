#version 450
// moe_route: per token, p = softmax(logits) (max subtracted, exp, divided by the sum), then k
// rounds of arg-max over p (ties to the lower expert), the chosen p divided by their sum when
// normalizing: the router of transformers' Qwen MoE blocks. Sums and arg-max in a fixed order, so
// the result does not depend on timing.
// With USE_SUBGROUP, where E <= LANE_VALUES * subgroup size and k <= subgroup size: one token per
// subgroup (common/route_topk.glsl: no shared memory, no barrier; the host sizes the grid to
// match). Otherwise
// one workgroup per token, through shared memory (subgroup reductions where present, else trees).
// The sum of exps is added as the workgroup path adds it (subgroup sums of the experts
// [i * subgroup size, (i + 1) * subgroup size), in ascending i), so where E <= WG both paths give
// the same bits.
// Bindings: 0 logits f32 [T, E], 1 routing uint [T, 2k] (expert ids, then weight bits).
// Defines: USE_SUBGROUP.
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/moe_route.h"
#define MAX_E 4096
#define MAX_K 64

layout(std430, binding = 0) readonly buffer Logits { float logits[]; };
layout(std430, binding = 1) writeonly buffer Routing { uint routing[]; };
#ifdef USE_SUBGROUP
#include "common/route_topk.glsl"
#endif

shared float probs[MAX_E];
shared float tree_v[WG];
shared uint tree_i[WG];
shared uint chosen_e[MAX_K];
#ifdef USE_SUBGROUP
shared float sg_v[WG];  // one entry per subgroup
shared uint sg_i[WG];
#endif
shared float chosen_p[MAX_K];

// tree_v[0] = max (op 0) or sum (op 1) of tree_v over the workgroup.
void tree_reduce(uint op) {
  const uint tid = gl_LocalInvocationID.x;
  barrier();
  for (uint stride = WG / 2; stride > 0; stride >>= 1) {
    if (tid < stride) tree_v[tid] = op == 0 ? max(tree_v[tid], tree_v[tid + stride]) : tree_v[tid] + tree_v[tid + stride];
    barrier();
  }
}

#ifdef USE_SUBGROUP
// The workgroup's max (op 0) or sum (op 1) of v: subgroup arithmetic, then the subgroups' results.
float reduce_value(float v, uint op) {
  const float r = op == 0 ? subgroupMax(v) : subgroupAdd(v);
  if (subgroupElect()) sg_v[gl_SubgroupID] = r;
  barrier();
  float total = sg_v[0];
  for (uint i = 1; i < gl_NumSubgroups; ++i) total = op == 0 ? max(total, sg_v[i]) : total + sg_v[i];
  barrier();
  return total;
}

// The workgroup's best (largest v, then lowest i) into tree_v[0], tree_i[0].
void reduce_best(float v, uint i) {
  const float m = subgroupMax(v);
  const uint at = subgroupMin(v == m ? i : 0xFFFFFFFFu);
  if (subgroupElect()) {
    sg_v[gl_SubgroupID] = m;
    sg_i[gl_SubgroupID] = at;
  }
  barrier();
  if (gl_LocalInvocationID.x == 0) {
    float bv = sg_v[0];
    uint bi = sg_i[0];
    for (uint s = 1; s < gl_NumSubgroups; ++s) {
      if (sg_v[s] > bv || (sg_v[s] == bv && sg_i[s] < bi)) bv = sg_v[s], bi = sg_i[s];
    }
    tree_v[0] = bv;
    tree_i[0] = bi;
  }
  barrier();
}

// Token t in this subgroup (common/route_topk.glsl); lane j < k writes the j-th choice.
void route_in_subgroup(uint t) {
  uint e;
  float w;
  route_token(p.logits_offset + t * p.E, p.E, p.k, p.normalize != 0u, e, w);
  const uint lane = gl_SubgroupInvocationID;
  if (lane < p.k) {
    const uint first = p.routing_offset + t * 2 * p.k;
    routing[first + lane] = e;
    routing[first + p.k + lane] = floatBitsToUint(w);
  }
}
#else
float reduce_value(float v, uint op) {
  tree_v[gl_LocalInvocationID.x] = v;
  tree_reduce(op);
  const float total = tree_v[0];
  barrier();
  return total;
}

void reduce_best(float v, uint i) {
  const uint tid = gl_LocalInvocationID.x;
  tree_v[tid] = v;
  tree_i[tid] = i;
  barrier();
  for (uint stride = WG / 2; stride > 0; stride >>= 1) {
    if (tid < stride) {
      const float o = tree_v[tid + stride];
      const uint oi = tree_i[tid + stride];
      if (o > tree_v[tid] || (o == tree_v[tid] && oi < tree_i[tid])) tree_v[tid] = o, tree_i[tid] = oi;
    }
    barrier();
  }
}
#endif

void main() {
  const uint tid = gl_LocalInvocationID.x, E = p.E, k = p.k;
#ifdef USE_SUBGROUP
  if (E <= LANE_VALUES * gl_SubgroupSize && k <= gl_SubgroupSize) {
    const uint teams = gl_NumSubgroups;
    for (uint t = gl_WorkGroupID.x * teams + gl_SubgroupID; t < p.T; t += gl_NumWorkGroups.x * teams) {
      route_in_subgroup(t);
    }
    return;
  }
#endif
  for (uint t = gl_WorkGroupID.x; t < p.T; t += gl_NumWorkGroups.x) {
    const uint row = p.logits_offset + t * E;
    float m = uintBitsToFloat(0xFF800000u);  // -inf
    for (uint e = tid; e < E; e += WG) m = max(m, logits[row + e]);
    const float top = reduce_value(m, 0);
    float s = 0.0;
    for (uint e = tid; e < E; e += WG) {
      const float v = exp(logits[row + e] - top);
      probs[e] = v;
      s += v;
    }
    const float sum = reduce_value(s, 1);
    for (uint e = tid; e < E; e += WG) probs[e] = probs[e] / sum;
    barrier();
    for (uint j = 0; j < k; ++j) {
      float best = -1.0;  // probabilities are >= 0; chosen ones are set to -1
      uint best_e = 0xFFFFFFFFu;
      for (uint e = tid; e < E; e += WG) {
        if (probs[e] > best) best = probs[e], best_e = e;  // ascending e: ties keep the lower
      }
      reduce_best(best, best_e);
      if (tid == 0) {
        chosen_e[j] = tree_i[0];
        chosen_p[j] = tree_v[0];
        probs[tree_i[0]] = -1.0;
      }
      barrier();
    }
    if (tid == 0) {
      float total = 0.0;
      for (uint j = 0; j < k; ++j) total += chosen_p[j];
      const uint first = p.routing_offset + t * 2 * k;
      for (uint j = 0; j < k; ++j) {
        routing[first + j] = chosen_e[j];
        routing[first + k + j] = floatBitsToUint(p.normalize != 0 ? chosen_p[j] / total : chosen_p[j]);
      }
    }
    barrier();
  }
}
