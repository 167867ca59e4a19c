#version 450
// moe_down: out[t, n] (+)= sum over token t's pairs j = t * k + s, in ascending (expert, s) order,
// of weight[t, s] * (down_e[n] . act[j]); the sum starts from out[t, n] when accumulating, so
// experts split over ascending batches give the bits of one call. Pairs whose table entry is 0 are
// not this call's. Grid: x over rows (with subgroups a workgroup per row, a subgroup per expert; else
// the workgroup per row and expert in turn), y over tokens.
// Bindings: 0 act f32 [T * k, K], 1 routing uint [T, 2k], 2 table uint [E, 6], 3 a norm weight
// [N] as 32-bit words (f32, bf16 or f16 pairs), 4 out f32 [T, N] (read and written), 5 scaled f32
// [T, N]. With `fold`, scaled = out * w (or * (1 + w)): the next layer's input norm folded
// (backend.h's FoldedNorm); else 3 and 5 are not read or written.
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
layout(std430, binding = 3) readonly buffer NormWeight { uint norm_words[]; };
layout(std430, binding = 4) buffer Out { float out_[]; };
layout(std430, binding = 5) writeonly buffer Scaled { float scaled[]; };

// The fold's weight of row n, widened exactly.
float norm_weight(uint n) {
  const uint at = p.fold_w_first + n;
  float w;
  if (p.fold_w_dtype == 0u) {
    w = uintBitsToFloat(norm_words[at]);
  } else {
    const uint word = norm_words[at >> 1], half_bits = (at & 1u) != 0u ? word >> 16 : word & 0xFFFFu;
    w = p.fold_w_dtype == 1u ? uintBitsToFloat(half_bits << 16) : unpackHalf2x16(half_bits).x;
  }
  return p.fold_zero_centered != 0u ? 1.0 + w : w;
}

// out[at] = acc, and its scaled copy with the fold.
void store_row(uint t, uint row, uint at_out, float acc) {
  out_[at_out] = acc;
  if (p.fold != 0u) scaled[p.fold_out_first + t * p.N + row] = acc * norm_weight(row);
}

#include "common/expert_dot.glsl"

// The token's slots in ascending (expert, slot) order, with their weights and down blocks (0: the
// expert is not this call's); the slot-ordered arrays fill them.
shared uint order[MAX_K];
shared float weights[MAX_K];
shared uvec2 blocks[MAX_K];
shared uint slot_ids[MAX_K];
shared float slot_weights[MAX_K];
shared uvec2 slot_blocks[MAX_K];
#ifdef USE_SUBGROUP
shared float dots[MAX_K];  // the dot products of the token's slots, in `order`'s order
#endif

// Sorts token t's slots (routing at `route`) into the shared arrays above. Each slot's invocation
// reads its own entry, then finds its place by counting the slots before it: no invocation walks
// a chain of loads.
void sort_slots(uint route) {
  barrier();  // the arrays of the token before
  for (uint s = gl_LocalInvocationID.x; s < p.k; s += WG) {
    const uint e = routing[route + s];
    const uint at = p.table_offset + min(e, p.E - 1) * 6;
    slot_ids[s] = e;
    slot_weights[s] = uintBitsToFloat(routing[route + p.k + s]);
    slot_blocks[s] = e < p.E ? uvec2(table[at + 4], table[at + 5]) : uvec2(0);
  }
  barrier();
  for (uint s = gl_LocalInvocationID.x; s < p.k; s += WG) {
    const uint e = slot_ids[s];
    uint place = 0;
    for (uint j = 0; j < p.k; ++j) place += slot_ids[j] < e || (slot_ids[j] == e && j < s) ? 1u : 0u;
    order[place] = s;
    weights[place] = slot_weights[s];
    blocks[place] = slot_blocks[s];
  }
  barrier();
}

void main() {
#ifdef USE_SUBGROUP
  // Subgroup i takes the slots order[i], order[i + subgroups], ... with all its lanes (K of a few
  // thousand columns: one memory round trip per expert); one invocation then adds the products in
  // ascending order, so a dot product's bits never depend on the other experts.
  const uint lane = gl_SubgroupInvocationID, S = gl_SubgroupSize;
#endif
  for (uint t = gl_WorkGroupID.y; t < p.T; t += gl_NumWorkGroups.y) {
    sort_slots(p.routing_offset + t * 2 * p.k);
#ifdef USE_SUBGROUP
    for (uint row = gl_WorkGroupID.x; row < p.N; row += gl_NumWorkGroups.x) {
#else
    for (uint row = gl_WorkGroupID.x * TEAM_COUNT + TEAM_ID; row < p.N; row += gl_NumWorkGroups.x * TEAM_COUNT) {
#endif
      const uint at_out = p.out_offset + t * p.N + row;
#ifdef USE_SUBGROUP
      // The row's old value, read while the dot products are in flight.
      const float old = gl_LocalInvocationID.x == 0 && p.accumulate != 0 ? out_[at_out] : 0.0;
      for (uint j = gl_SubgroupID; j < p.k; j += gl_NumSubgroups) {
        const uvec2 down = blocks[j];
        float d = 0.0;
        if (down != uvec2(0)) {  // uniform in the subgroup
          use_block(down);
          d = subgroupAdd(lane_dot_at(row, p.in_offset + (t * p.k + order[j]) * p.K, lane, S));
        }
        if (lane == 0) dots[j] = d;
      }
      barrier();
      if (gl_LocalInvocationID.x == 0) {
        precise float acc = old;
        for (uint j = 0; j < p.k; ++j) {
          if (blocks[j] == uvec2(0)) continue;
          precise float term = weights[j] * dots[j];
          acc = acc + term;
        }
        store_row(t, row, at_out, acc);
      }
      barrier();  // dots is written again for the next row
#else
      precise float acc = p.accumulate != 0 ? out_[at_out] : 0.0;
      for (uint j = 0; j < p.k; ++j) {
        const uvec2 down = blocks[j];
        if (down == uvec2(0)) continue;
        use_block(down);
        float v[1] = float[1](lane_dot(row, p.in_offset + (t * p.k + order[j]) * p.K));
        workgroup_sums(v);
        precise float term = weights[j] * reduce_total[0];
        acc = acc + term;
      }
      if (TEAM_LANE == 0) store_row(t, row, at_out, acc);
#endif
    }
  }
}
