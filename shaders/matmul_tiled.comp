#version 450
// matmul_tiled: y = x w^T for many rows of x (prefill), in common/tile_matmul.glsl's tiles: 64 rows
// of x x 128 rows of w per workgroup (256 invocations, pipelines.cpp), K in slices of 32 through
// shared memory while the next slice loads into registers, 8 x 4 outputs per invocation; tiles in
// grid-stride loops. The last tile of x computes only its real rows, rounded up to 8.
// Bindings: 0 x f32 [T, K], 1 w WEIGHT_T [N, K], 2 y f32 [T, ldy]. Defines: W_F32 | W_F16 | W_BF16.
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/matmul.h"

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 0) readonly buffer X4 { vec4 x4[]; };  // when x_offset and K are multiples of 4
layout(std430, binding = 1) readonly buffer W { WEIGHT_T w[]; };
layout(std430, binding = 1) readonly buffer W4 { WEIGHT4_T w4[]; };  // likewise
layout(std430, binding = 2) writeonly buffer Y { float y[]; };

#define TILE_X(i) x[i]
#define TILE_X4(i) x4[i]
#include "common/tile_matmul.glsl"  // TILE (kTile in ops/matmul.cpp), BK, WR (kTileN)

void main() {
  const uint tid = gl_LocalInvocationID.x, row_lo = tile_row_lo(tid);
  uint wrow[4];
  [[unroll]] for (uint j = 0; j < 4; ++j) wrow[j] = tile_wrow(tid, j);
  const uint tiles_n = (p.N + WR - 1) / WR, tiles_t = (p.T + TILE - 1) / TILE, slices = (p.K + BK - 1) / BK;
  // Whole vec4s where rows start at multiples of 4 floats; else one element at a time (same bits).
  const bool x_vec4 = p.K % 4 == 0 && p.x_offset % 4 == 0, w_vec4 = p.K % 4 == 0 && p.w_offset % 4 == 0;
  const uint xk = tile_x_col(tid);
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
      // The next slice in registers.
      vec4 xr[2], wr[4];
      uint wn[4];
      [[unroll]] for (uint h = 0; h < 4; ++h) wn[h] = n0 + tile_w_row(tid, h);

      for (uint s = 0; s <= slices; ++s) {
        const uint k0 = s * BK;
        if (s > 0) {  // slice s - 1 from registers into shared memory
          barrier();  // every invocation is done reading the slice before
          tile_store_x(tid, xr);
          tile_store_w(tid, wr);
          barrier();
        }
        if (s < slices) {  // slice s into registers
          const uint k = k0 + xk;
          [[unroll]] for (uint h = 0; h < 2; ++h) xr[h] = tile_x_load(xbase[h], k, p.K, x_vec4);
          [[unroll]] for (uint h = 0; h < 4; ++h) {
            const uint n = wn[h], at = p.w_offset + n * p.K + k;
            wr[h] = vec4(0.0);
            if (n < p.N && k < p.K) {
              if (w_vec4) {
                wr[h] = weight4_to_vec4(w4[at / 4]);
              } else {
                [[unroll]] for (uint c = 0; c < 4; ++c) wr[h][c] = k + c < p.K ? weight_to_float(w[at + c]) : 0.0;
              }
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
          if (m < count && n < p.N) y[row + n] = acc[i][j];
        }
      }
    }
  }
}
