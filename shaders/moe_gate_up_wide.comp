#version 450
// moe_gate_up_wide: moe_gate_up (the same inputs, outputs and grid) for 4- and 8-bit experts, read
// 16 bytes at a time. A subgroup takes S / SLICES rows of a pair's gate and up; the SLICES lanes of
// a row split it into chunks of one uvec4 (128 / Q_BITS values, inside one group), UNROLL chunks of
// gate and of up in flight per lane. Lanes of one slice read the same x (one load for all rows of
// the subgroup), and each chunk adds scale * (q . x) + bias * sum(x), the group's affine terms
// factored out as the CPU kernels factor them.
// Bindings: 0 x f32 [T, K] (also as vec4), 1 routing uint [T, 2k], 2 table uint [E, 6],
// 3 act f32 [T * k, N]. Defines: Q_BITS (8 or 4). Needs subgroup arithmetic; the host picks this
// kernel where group_size is a multiple of a chunk's values and blocks start 16-byte aligned.
#define USE_BUFFER_REFERENCE
#define USE_SUBGROUP
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/moe_pairs.h"

#define SLICES 8
#define UNROLL 4

layout(std430, binding = 0) readonly buffer In { float vin[]; };
layout(std430, binding = 0) readonly buffer In4 { vec4 vin4[]; };
layout(std430, binding = 1) readonly buffer Routing { uint routing[]; };
layout(std430, binding = 2) readonly buffer Table { uint table[]; };
layout(std430, binding = 3) writeonly buffer Act { float act[]; };

layout(buffer_reference, std430, buffer_reference_align = 16) readonly buffer ChunkRef { uvec4 v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) readonly buffer WordRef { uint v[]; };

#include "common/quant_chunk.glsl"

void main() {
  const uint S = gl_SubgroupSize, lane = gl_SubgroupInvocationID;
  const uint slices = min(uint(SLICES), S), rows_here = S / slices;
  const uint mine = lane / slices, slice = lane % slices;  // this lane's row of the subgroup's, and slice
  const uint chunks = p.K / CHUNK_VALUES, row_chunks = p.row_words / 4;
  for (uint pair = gl_WorkGroupID.y; pair < p.T * p.k; pair += gl_NumWorkGroups.y) {
    const uint t = pair / p.k, s = pair % p.k;
    const uint e = routing[p.routing_offset + t * 2 * p.k + s];
    if (e >= p.E) continue;
    const uint at = p.table_offset + e * 6;
    const uvec2 gate = uvec2(table[at], table[at + 1]), up = uvec2(table[at + 2], table[at + 3]);
    if (gate == uvec2(0) || up == uvec2(0)) continue;  // not this call's expert
    ChunkRef gq = ChunkRef(gate), uq = ChunkRef(up);
    WordRef gw = WordRef(gate), uw = WordRef(up);
    const uint base = p.in_offset + t * p.K;
    const bool x_aligned = (base & 3u) == 0u;
    const uint stride = gl_NumWorkGroups.x * gl_NumSubgroups * rows_here;
    for (uint row0 = (gl_WorkGroupID.x * gl_NumSubgroups + gl_SubgroupID) * rows_here; row0 < p.N; row0 += stride) {
      const uint row = min(row0 + mine, p.N - 1u);  // rows past N read the last one and are not stored
      vec2 acc = vec2(0.0);
      for (uint c0 = slice; c0 < chunks; c0 += UNROLL * slices) {
        uvec4 g[UNROLL], u[UNROLL];
        vec2 g_affine[UNROLL], u_affine[UNROLL];
        [[unroll]] for (uint j = 0; j < UNROLL; ++j) {
          const uint c = min(c0 + j * slices, chunks - 1u);  // past the row: read its last chunk, skipped below
          g[j] = gq.v[row * row_chunks + c];
          u[j] = uq.v[row * row_chunks + c];
          g_affine[j] = chunk_affine(gw, row, c);
          u_affine[j] = chunk_affine(uw, row, c);
        }
        [[unroll]] for (uint j = 0; j < UNROLL; ++j) {
          const uint c = c0 + j * slices;
          if (c >= chunks) break;
          acc += chunk_dot_pair(g[j], g_affine[j], u[j], u_affine[j], base + c * CHUNK_VALUES, x_aligned);
        }
      }
      for (uint r = 0; r < rows_here; ++r) {
        const float gs = subgroupAdd(mine == r ? acc.x : 0.0), us = subgroupAdd(mine == r ? acc.y : 0.0);
        if (lane == r * slices && row0 + r < p.N) act[p.out_offset + pair * p.N + row0 + r] = (gs / (1.0 + exp(-gs))) * us;
      }
    }
  }
}
