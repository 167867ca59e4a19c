#version 450
// matmul_tiled_q: y = x w^T for many rows of x (prefill) with a quantized w, in
// common/tile_matmul.glsl's tiles: 64 rows of x x 128 rows of w per workgroup (256 invocations,
// pipelines.cpp), K in slices of 32 whose w part is dequantized once into shared memory while the
// next slice loads into registers, 8 x 4 outputs per invocation; tiles in grid-stride loops. The
// last tile of x computes only its real rows, rounded up to 8.
// Bindings: 0 x f32 [T, K], 1 q_words, 2 s_words, 3 b_words (uint), 4 y f32 [T, ldy].
// Defines: Q_BITS (8, 4, 3, 2).
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/matmul_q.h"

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 0) readonly buffer X4 { vec4 x4[]; };  // when x_offset is a multiple of 4
layout(std430, binding = 1) readonly buffer QW { uint q_words[]; };
layout(std430, binding = 2) readonly buffer SW { uint s_words[]; };
layout(std430, binding = 3) readonly buffer BW { uint b_words[]; };
layout(std430, binding = 4) buffer Y { float y[]; };
#include "common/store_y.glsl"

#include "common/dequant.glsl"
#define TILE_X(i) x[i]
#define TILE_X4(i) x4[i]
#define TILE_Q_SRC uint  // unused: the q words are all one binding
#define TILE_Q_WORD(src, i) q_words[i]
#include "common/tile_matmul.glsl"  // TILE (kTile in ops/quantized.cpp), BK, WR (kTileN)

void main() {
  const QuantRows r = QuantRows(p.q_first, p.s_first, p.b_first, p.row_words, p.groups, p.group_size, p.scale_bf16);
  const uint tid = gl_LocalInvocationID.x, row_lo = tile_row_lo(tid);
  uint wrow[4];
  [[unroll]] for (uint j = 0; j < 4; ++j) wrow[j] = tile_wrow(tid, j);
  // K is a multiple of 32: whole slices, each within one group, and x rows are vec4s when x starts
  // at one.
  const uint tiles_n = (p.N + WR - 1) / WR, tiles_t = (p.T + TILE - 1) / TILE, slices = p.K / BK;
  const bool x_vec4 = p.x_offset % 4 == 0;
  const uint xk = tile_x_col(tid), wk = tile_q_col(tid);
  for (uint bt = gl_WorkGroupID.y; bt < tiles_t; bt += gl_NumWorkGroups.y) {
    const uint count = min(TILE, p.T - bt * TILE);  // real rows of this tile
    const uint groups8 = (count + 7) / 8;           // groups of 8 rows computed
    uint xbase[2];
    [[unroll]] for (uint h = 0; h < 2; ++h) {
      const uint m = tile_x_row(tid, h);
      xbase[h] = m < count ? p.x_offset + (bt * TILE + m) * p.K : NO_ROW;
    }

    for (uint bn = gl_WorkGroupID.x; bn < tiles_n; bn += gl_NumWorkGroups.x) {
      const uint n0 = bn * WR;
      float acc[8][4];
      [[unroll]] for (uint i = 0; i < 8; ++i) {
        [[unroll]] for (uint j = 0; j < 4; ++j) acc[i][j] = 0.0;
      }
      // The next slice in registers: x, and the weights as stored; scales and biases are reloaded
      // only when a slice starts a group.
      vec4 xr[2];
      uint wn[2];
      TILE_Q_T wq[2];
      float wscale[2], wbias[2];
      [[unroll]] for (uint h = 0; h < 2; ++h) wn[h] = n0 + tile_q_row(tid, h);

      for (uint s = 0; s <= slices; ++s) {
        const uint k0 = s * BK;
        if (s > 0) {  // slice s - 1 from registers into shared memory
          barrier();  // every invocation is done reading the slice before
          tile_store_x(tid, xr);
          tile_store_q(tid, wq, wscale, wbias);
          barrier();
        }
        if (s < slices) {  // slice s into registers
          [[unroll]] for (uint h = 0; h < 2; ++h) xr[h] = tile_x_load(xbase[h], k0 + xk, p.K, x_vec4);
          const bool new_group = k0 % p.group_size == 0;
          [[unroll]] for (uint h = 0; h < 2; ++h) {
            const uint n = wn[h];
            wq[h] = TILE_Q_ZERO;  // rows past N: zeros
            if (n < p.N) wq[h] = tile_q_load(0u, r.q_first + n * r.row_words, k0 + wk);
            if (new_group) {
              const uint g = k0 / p.group_size;
              wscale[h] = n < p.N ? dequant_scale(r, n, g) : 0.0;
              wbias[h] = n < p.N ? dequant_bias(r, n, g) : 0.0;
            }
          }
        }
        if (s == 0) continue;
        tile_fma(acc, row_lo, wrow, groups8);  // slice s - 1
      }

      [[unroll]] for (uint i = 0; i < 8; ++i) {
        const uint m = 8 * i + row_lo, row = p.y_offset + (bt * TILE + m) * p.ldy;
        [[unroll]] for (uint j = 0; j < 4; ++j) {
          const uint n = n0 + wrow[j];
          if (m < count && n < p.N) store_y(row + n, acc[i][j]);
        }
      }
    }
  }
}
