#version 450
// moe_grouped: the expert projections of a prefill batch as one tiled product. Rows are the
// (token, slot) pairs sorted by expert, each expert's padded to whole 64-row tiles, so a tile has
// one expert, whose weights come by address from the batch's table.
// GATE_UP: act[r, n] = silu(gate_e[n] . x[token_r]) * (up_e[n] . x[token_r]); else (down)
// y[r, n] = down_e[n] . act[r]. Padding rows are neither read nor written.
//
// The tiles are common/tile_matmul.glsl's: 64 rows x 128 weight rows per workgroup (gate_up: 64
// columns of gate and the same 64 of up, so SwiGLU happens in registers; down: 128 columns), K in
// slices of 32, the FMAs of a tile's padding skipped in groups of 8 rows (tile row counts in the
// plan). Each output is one fma chain over k in ascending order, so batches (the device tier's
// budget) never change the bits.
// Bindings: 0 in f32, 1 plan uint, 2 table uint [E, 6], 3 out f32 [rows, N].
// Defines: Q_BITS (8, 4, 3, 2) or W_F32 | W_F16 | W_BF16; GATE_UP.
#define USE_BUFFER_REFERENCE
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/moe_grouped.h"

layout(std430, binding = 0) readonly buffer In { float vin[]; };
layout(std430, binding = 0) readonly buffer In4 { vec4 vin4[]; };  // when p.in_vec4
layout(std430, binding = 1) readonly buffer Plan { uint plan[]; };
layout(std430, binding = 2) readonly buffer Table { uint table[]; };
layout(std430, binding = 3) writeonly buffer Out { float out_[]; };

#ifdef Q_BITS
layout(buffer_reference, std430, buffer_reference_align = 4) readonly buffer WordRef { uint v[]; };
#define TILE_Q_SRC WordRef
#define TILE_Q_WORD(src, i) src.v[i]
#else
layout(buffer_reference, std430, buffer_reference_align = 2) readonly buffer WeightRef { WEIGHT_T v[]; };
#if defined(W_F32)
layout(buffer_reference, std430, buffer_reference_align = 16) readonly buffer Weight4Ref { WEIGHT4_T v[]; };
#else
layout(buffer_reference, std430, buffer_reference_align = 8) readonly buffer Weight4Ref { WEIGHT4_T v[]; };
#endif
#endif

#define TILE_X(i) vin[i]
#define TILE_X4(i) vin4[i]
#include "common/tile_matmul.glsl"  // TILE (kTile in ops/moe_grouped.cpp), BK, WR

#ifdef GATE_UP
#define TN 64    // output columns per workgroup (gate rows [0, 64), up rows [64, 128) of ws)
#else
#define TN 128
#endif

#ifdef Q_BITS
// The 16-bit scale or bias at 16-bit index i of a block (dequant.glsl's dequant_half).
float half_at(WordRef ref, uint i) {
  const uint h = (ref.v[i >> 1] >> (16 * (i & 1u))) & 0xFFFFu;
  return p.scale_bf16 != 0 ? uintBitsToFloat(h << 16) : unpackHalf2x16(h).x;
}
#endif

void main() {
  const uint tid = gl_LocalInvocationID.x, row_lo = tile_row_lo(tid);
  // This invocation's weight rows wrow[j] (j < 4).
  uint wrow[4];
  [[unroll]] for (uint j = 0; j < 4; ++j) {
#ifdef GATE_UP
    // j and j + 2: gate and up of one column
    wrow[j] = (j / 2) * TN + ((tid / 32) % 4) * 16 + tid % 8 + 8 * (j % 2);
#else
    wrow[j] = tile_wrow(tid, j);
#endif
  }
  const uint tiles_n = (p.N + TN - 1) / TN, slices = (p.K + BK - 1) / BK;
  for (uint bt = gl_WorkGroupID.y; bt < p.n_tiles; bt += gl_NumWorkGroups.y) {
    const uint expert = plan[p.plan_offset + bt];
    if (expert >= p.E) continue;
    const uint count = plan[p.plan_offset + p.n_tiles + bt];  // real rows: a prefix of the tile
    const uint groups8 = (count + 7) / 8;                     // groups of 8 rows computed
    const uint at = p.table_offset + expert * 6;
#ifdef GATE_UP
    const uvec2 addr[2] = uvec2[2](uvec2(table[at], table[at + 1]), uvec2(table[at + 2], table[at + 3]));
#else
    const uvec2 addr[2] = uvec2[2](uvec2(table[at + 4], table[at + 5]), uvec2(table[at + 4], table[at + 5]));
#endif
    const uint xk = tile_x_col(tid);
    uint xbase[2];
    [[unroll]] for (uint h = 0; h < 2; ++h) {
      const uint r = tile_x_row(tid, h);
#ifdef GATE_UP
      xbase[h] = r < count ? p.in_offset + plan[p.plan_offset + 2 * p.n_tiles + bt * TILE + r] * p.K : NO_ROW;
#else
      xbase[h] = r < count ? p.in_offset + (bt * TILE + r) * p.K : NO_ROW;
#endif
    }

    for (uint bn = gl_WorkGroupID.x; bn < tiles_n; bn += gl_NumWorkGroups.x) {
      const uint n0 = bn * TN;
      float acc[8][4];
      [[unroll]] for (uint i = 0; i < 8; ++i) {
        [[unroll]] for (uint j = 0; j < 4; ++j) acc[i][j] = 0.0;
      }
      // The next slice in registers: x, and the weights as stored.
      vec4 xr[2];
#ifdef Q_BITS
      // Scales and biases are reloaded only when a slice starts a group.
      const uint wk = tile_q_col(tid);
      WordRef wref[2];
      uint wn[2];
      TILE_Q_T wq[2];
      float wscale[2], wbias[2];
      [[unroll]] for (uint h = 0; h < 2; ++h) {
        const uint r = tile_q_row(tid, h);
        wref[h] = WordRef(addr[r / TN]);
        wn[h] = n0 + r % TN;
      }
#else
      const uint wk = tile_x_col(tid);
      uint wn[4];
      uvec2 waddr[4];
      vec4 wr[4];
      [[unroll]] for (uint h = 0; h < 4; ++h) {
        const uint r = tile_w_row(tid, h);
        waddr[h] = addr[r / TN];
        wn[h] = n0 + r % TN;
      }
#endif

      for (uint s = 0; s <= slices; ++s) {
        const uint k0 = s * BK;
        if (s > 0) {  // slice s - 1 from registers into shared memory
          barrier();  // every invocation is done reading the slice before
          tile_store_x(tid, xr);
#ifdef Q_BITS
          tile_store_q(tid, wq, wscale, wbias);
#else
          tile_store_w(tid, wr);
#endif
          barrier();
        }
        if (s < slices) {  // slice s into registers
          [[unroll]] for (uint h = 0; h < 2; ++h) xr[h] = tile_x_load(xbase[h], k0 + xk, p.K, p.in_vec4 != 0);
#ifdef Q_BITS
          const bool new_group = k0 % p.group_size == 0;
          [[unroll]] for (uint h = 0; h < 2; ++h) {
            const uint n = wn[h];
            wq[h] = TILE_Q_ZERO;  // rows past N: zeros
            if (n < p.N) wq[h] = tile_q_load(wref[h], n * p.row_words, k0 + wk);
            if (new_group) {
              const uint g = n * p.groups + k0 / p.group_size;
              wscale[h] = n < p.N ? half_at(wref[h], p.s_first + g) : 0.0;
              wbias[h] = n < p.N ? half_at(wref[h], p.b_first + g) : 0.0;
            }
          }
#else
          [[unroll]] for (uint h = 0; h < 4; ++h) {
            const uint n = wn[h], k = k0 + wk;
            wr[h] = vec4(0.0);
            if (n < p.N && k < p.K) {
              if (p.K % 4 == 0) {
                wr[h] = weight4_to_vec4(Weight4Ref(waddr[h]).v[(n * p.K + k) / 4]);
              } else {
                WeightRef ref = WeightRef(waddr[h]);
                [[unroll]] for (uint c = 0; c < 4; ++c) wr[h][c] = k + c < p.K ? weight_to_float(ref.v[n * p.K + k + c]) : 0.0;
              }
            }
          }
#endif
        }
        if (s == 0) continue;
        tile_fma(acc, row_lo, wrow, groups8);  // slice s - 1
      }

      [[unroll]] for (uint i = 0; i < 8; ++i) {
        const uint r = 8 * i + row_lo, row = p.out_offset + (bt * TILE + r) * p.N;
#ifdef GATE_UP
        [[unroll]] for (uint j = 0; j < 2; ++j) {
          const uint n = n0 + wrow[j];
          const float g = acc[i][j];
          if (r < count && n < p.N) out_[row + n] = (g / (1.0 + exp(-g))) * acc[i][j + 2];
        }
#else
        [[unroll]] for (uint j = 0; j < 4; ++j) {
          const uint n = n0 + wrow[j];
          if (r < count && n < p.N) out_[row + n] = acc[i][j];
        }
#endif
      }
    }
  }
}
