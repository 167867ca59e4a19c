#version 450
// matmul_tiled_q: y = x w^T for many rows of x (prefill) with a quantized w: 64 x 64 output
// tiles, K in slices of 32 whose w part is dequantized into shared memory (one dequant8 block per
// invocation), 256 invocations each computing 4 x 4 outputs; tiles in grid-stride loops.
// Bindings: 0 x f32 [T, K], 1 q_words, 2 s_words, 3 b_words (uint), 4 y f32 [T, ldy].
// Defines: Q_BITS (8, 4, 3, 2).
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/matmul_q.h"

#define TILE 64
#define BK 32  // K is a multiple of 32, so a slice never runs past a row nor straddles a group
#define PER 4  // outputs per invocation along each axis: TILE / 16, with WG = 256 (pipelines.cpp)

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer QW { uint q_words[]; };
layout(std430, binding = 2) readonly buffer SW { uint s_words[]; };
layout(std430, binding = 3) readonly buffer BW { uint b_words[]; };
layout(std430, binding = 4) writeonly buffer Y { float y[]; };

#include "common/dequant.glsl"

shared float xs[TILE][BK + 1];  // +1: rows land in different banks
shared float ws[TILE][BK + 1];

void main() {
  const QuantRows r = QuantRows(p.q_first, p.s_first, p.b_first, p.row_words, p.groups, p.group_size, p.scale_bf16);
  const uint tid = gl_LocalInvocationID.x;
  const uint tx = tid % 16, ty = tid / 16;
  const uint tiles_n = (p.N + TILE - 1) / TILE, tiles_t = (p.T + TILE - 1) / TILE;
  for (uint bt = gl_WorkGroupID.y; bt < tiles_t; bt += gl_NumWorkGroups.y) {
    for (uint bn = gl_WorkGroupID.x; bn < tiles_n; bn += gl_NumWorkGroups.x) {
      float acc[PER][PER];
      for (uint i = 0; i < PER; ++i)
        for (uint j = 0; j < PER; ++j) acc[i][j] = 0.0;
      for (uint k0 = 0; k0 < p.K; k0 += BK) {
        for (uint e = tid; e < TILE * BK; e += WG) {
          const uint m = e / BK, kk = e % BK, t = bt * TILE + m;
          xs[m][kk] = t < p.T ? x[p.x_offset + t * p.K + k0 + kk] : 0.0;
        }
        for (uint e = tid; e < TILE * (BK / 8); e += WG) {
          const uint m = e / (BK / 8), kk = (e % (BK / 8)) * 8, n = bn * TILE + m;
          float v[8];
          if (n < p.N) {
            dequant8(r, n, k0 + kk, v);
          } else {
            for (uint i = 0; i < 8; ++i) v[i] = 0.0;
          }
          for (uint i = 0; i < 8; ++i) ws[m][kk + i] = v[i];
        }
        barrier();
        for (uint kk = 0; kk < BK; ++kk) {
          float a[PER], b[PER];
          for (uint i = 0; i < PER; ++i) a[i] = xs[ty * PER + i][kk];
          for (uint j = 0; j < PER; ++j) b[j] = ws[tx * PER + j][kk];
          for (uint i = 0; i < PER; ++i)
            for (uint j = 0; j < PER; ++j) acc[i][j] += a[i] * b[j];
        }
        barrier();
      }
      for (uint i = 0; i < PER; ++i) {
        const uint t = bt * TILE + ty * PER + i;
        for (uint j = 0; j < PER; ++j) {
          const uint n = bn * TILE + tx * PER + j;
          if (t < p.T && n < p.N) y[p.y_offset + t * p.ldy + n] = acc[i][j];
        }
      }
    }
  }
}
