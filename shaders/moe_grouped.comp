#version 450
// moe_grouped: the expert projections of a prefill batch as one tiled product. Rows are the
// (token, slot) pairs sorted by expert, each expert's padded to whole 64-row tiles, so a tile has
// one expert, whose weights come by address from the batch's table.
// GATE_UP: act[r, n] = silu(gate_e[n] . x[token_r]) * (up_e[n] . x[token_r]); else (down)
// y[r, n] = down_e[n] . act[r]. Padding rows are neither read nor written.
//
// A workgroup (256 invocations, pipelines.cpp) computes 64 rows x 128 weight rows (gate_up: 64
// columns of gate and the same 64 of up, so SwiGLU happens in registers; down: 128 columns). K goes
// in slices of 32: each slice's weights are dequantized once into shared memory as f32 (each is
// then used by all 64 rows) while the next slice's raw words load into registers.
// An invocation owns 8 rows x 4 weight rows, read as vec4s along k: per 4 k a warp loads 8 row
// vec4s (4 addresses each) and 4 weight vec4s (8 addresses each) for 128 FMAs per lane; the
// 36-float row stride puts those addresses in distinct banks, one wavefront per load.
// An invocation's rows are 8 apart (8 i + its own), so each group of 8 rows spans all warps: the
// groups past the tile's last real row are skipped by the whole workgroup alike, and a tile costs
// the FMAs of its real rows rounded up to 8 (20 real rows: 24, not 64).
// Each output is one fma chain over k in ascending order, whatever the tile or batch holds, so
// batches (the device tier's budget) never change the bits. Quantized values are fma(q, scale,
// bias): q * scale is exact in f32 (at most 8 + 11 significant bits), so this rounds as format's
// dequantizer (q * scale, then + bias).
// Bindings: 0 in f32, 1 plan uint, 2 table uint [E, 6], 3 out f32 [rows, N].
// Defines: Q_BITS (8, 4, 3, 2) or W_F32 | W_F16 | W_BF16; GATE_UP.
#define USE_BUFFER_REFERENCE
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/moe_grouped.h"

#define TILE 64  // rows of a tile: kTile in ops/moe_grouped.cpp
#define BK 32    // K per slice; divides every group size (32, 64, 128) and every quantized K
#define KV 8     // BK / 4: vec4s of a slice row
#define PAD 9    // vec4s per shared row: KV + 1, so rows 1 apart start 4 banks apart
#define WR 128   // weight rows per workgroup
#ifdef GATE_UP
#define TN 64    // output columns per workgroup (gate rows [0, 64), up rows [64, 128) of ws)
#else
#define TN 128
#endif
#define NO_ROW 0xFFFFFFFFu

layout(std430, binding = 0) readonly buffer In { float vin[]; };
layout(std430, binding = 0) readonly buffer In4 { vec4 vin4[]; };  // when p.in_vec4
layout(std430, binding = 1) readonly buffer Plan { uint plan[]; };
layout(std430, binding = 2) readonly buffer Table { uint table[]; };
layout(std430, binding = 3) writeonly buffer Out { float out_[]; };

#ifdef Q_BITS
layout(buffer_reference, std430, buffer_reference_align = 4) readonly buffer WordRef { uint v[]; };
#else
layout(buffer_reference, std430, buffer_reference_align = 2) readonly buffer WeightRef { WEIGHT_T v[]; };
#if defined(W_F32)
layout(buffer_reference, std430, buffer_reference_align = 16) readonly buffer Weight4Ref { vec4 v[]; };
#define weight4_to_vec4(v) (v)
#elif defined(W_F16)
layout(buffer_reference, std430, buffer_reference_align = 8) readonly buffer Weight4Ref { f16vec4 v[]; };
#define weight4_to_vec4(v) vec4(v)
#else
layout(buffer_reference, std430, buffer_reference_align = 8) readonly buffer Weight4Ref { u16vec4 v[]; };
#define weight4_to_vec4(v) uintBitsToFloat(uvec4(v) << 16)
#endif
#endif

shared vec4 xs[TILE][PAD];  // x (gate_up) or act (down) rows of the slice
shared vec4 ws[WR][PAD];    // weight rows of the slice, dequantized

#ifdef Q_BITS
// The 16-bit scale or bias at 16-bit index i of a block (dequant.glsl's dequant_half).
float half_at(WordRef ref, uint i) {
  const uint h = (ref.v[i >> 1] >> (16 * (i & 1u))) & 0xFFFFu;
  return p.scale_bf16 != 0 ? uintBitsToFloat(h << 16) : unpackHalf2x16(h).x;
}
#endif

// float(q) for q < 2^23 without a conversion instruction: 2^23 + q is exact, then minus 2^23.
float q_float(uint q) { return uintBitsToFloat(q | 0x4B000000u) - 8388608.0; }

void main() {
  const uint tid = gl_LocalInvocationID.x, lane = tid % 32, warp = tid / 32;
  // This invocation's rows 8 i + row_lo (i < 8) and weight rows wrow[j] (j < 4).
  const uint row_lo = 4 * (warp / 4) + lane / 8, lc = lane % 8, wc = warp % 4;
  uint wrow[4];
  [[unroll]] for (uint j = 0; j < 4; ++j) {
#ifdef GATE_UP
    wrow[j] = (j / 2) * TN + wc * 16 + lc + 8 * (j % 2);  // j and j + 2: gate and up of one column
#else
    wrow[j] = wc * 32 + lc + 8 * j;
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
    // The x rows this invocation loads: rows tid / 8 + 32 h, columns 4 (tid % 8) + [0, 4) of a slice.
    const uint xk = 4 * (tid % 8);
    uint xbase[2];
    [[unroll]] for (uint h = 0; h < 2; ++h) {
      const uint r = tid / 8 + 32 * h;
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
      // Weight rows tid / 4 + 64 h, 8-column block tid % 4 of a slice; scales and biases are reloaded
      // only when a slice starts a group.
      const uint wk = 8 * (tid % 4);
      WordRef wref[2];
      uint wn[2];
#if Q_BITS == 8
      uvec2 wq[2];
#define Q_ZERO uvec2(0)
#else
      uint wq[2];  // the block's 8 values of Q_BITS bits
#define Q_ZERO 0u
#endif
      float wscale[2], wbias[2];
      [[unroll]] for (uint h = 0; h < 2; ++h) {
        const uint r = tid / 4 + 64 * h;
        wref[h] = WordRef(addr[r / TN]);
        wn[h] = n0 + r % TN;
      }
#else
      // Weight rows tid / 8 + 32 h, columns 4 (tid % 8) + [0, 4) of a slice.
      const uint wk = 4 * (tid % 8);
      uint wn[4];
      uvec2 waddr[4];
      vec4 wr[4];
      [[unroll]] for (uint h = 0; h < 4; ++h) {
        const uint r = tid / 8 + 32 * h;
        waddr[h] = addr[r / TN];
        wn[h] = n0 + r % TN;
      }
#endif

      for (uint s = 0; s <= slices; ++s) {
        const uint k0 = s * BK;
        if (s > 0) {  // slice s - 1 from registers into shared memory
          barrier();  // every invocation is done reading the slice before
          [[unroll]] for (uint h = 0; h < 2; ++h) xs[tid / 8 + 32 * h][tid % 8] = xr[h];
#ifdef Q_BITS
          [[unroll]] for (uint h = 0; h < 2; ++h) {
            float v[8];
            [[unroll]] for (uint i = 0; i < 8; ++i) {
#if Q_BITS == 8
              const uint q = ((i < 4 ? wq[h].x : wq[h].y) >> (8 * (i % 4))) & 0xFFu;
#else
              const uint q = (wq[h] >> (Q_BITS * i)) & ((1u << Q_BITS) - 1u);
#endif
              v[i] = fma(q_float(q), wscale[h], wbias[h]);
            }
            const uint r = tid / 4 + 64 * h, c = 2 * (tid % 4);
            ws[r][c] = vec4(v[0], v[1], v[2], v[3]);
            ws[r][c + 1] = vec4(v[4], v[5], v[6], v[7]);
          }
#else
          [[unroll]] for (uint h = 0; h < 4; ++h) ws[tid / 8 + 32 * h][tid % 8] = wr[h];
#endif
          barrier();
        }
        if (s < slices) {  // slice s into registers
          [[unroll]] for (uint h = 0; h < 2; ++h) {
            const uint k = k0 + xk;
            xr[h] = vec4(0.0);
            if (xbase[h] != NO_ROW && k < p.K) {
              if (p.in_vec4 != 0) {
                xr[h] = vin4[(xbase[h] + k) / 4];
              } else {
                [[unroll]] for (uint c = 0; c < 4; ++c) xr[h][c] = k + c < p.K ? vin[xbase[h] + k + c] : 0.0;
              }
            }
          }
#ifdef Q_BITS
          const bool new_group = k0 % p.group_size == 0;
          [[unroll]] for (uint h = 0; h < 2; ++h) {
            const uint n = wn[h], col = k0 + wk;
            wq[h] = Q_ZERO;  // rows past N: zeros
            if (n < p.N) {
              const uint base = n * p.row_words;
#if Q_BITS == 8
              wq[h] = uvec2(wref[h].v[base + col / 4], wref[h].v[base + col / 4 + 1]);
#elif Q_BITS == 4
              wq[h] = wref[h].v[base + col / 8];
#else
              const uint bit = col * Q_BITS, word = base + bit / 32, shift = bit % 32;
              uint q = wref[h].v[word] >> shift;
              if (shift + 8 * Q_BITS > 32) q |= wref[h].v[word + 1] << (32 - shift);
              wq[h] = q;
#endif
            }
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
        // Slice s - 1: the FMAs of the row groups holding real rows (the same for the whole group).
        [[unroll]] for (uint kv = 0; kv < KV; ++kv) {
          vec4 b[4];
          [[unroll]] for (uint j = 0; j < 4; ++j) b[j] = ws[wrow[j]][kv];
          [[unroll]] for (uint i = 0; i < 8; ++i) {
            if (i < groups8) {
              const vec4 a = xs[8 * i + row_lo][kv];
              [[unroll]] for (uint j = 0; j < 4; ++j) {
                acc[i][j] = fma(a.x, b[j].x, acc[i][j]);
                acc[i][j] = fma(a.y, b[j].y, acc[i][j]);
                acc[i][j] = fma(a.z, b[j].z, acc[i][j]);
                acc[i][j] = fma(a.w, b[j].w, acc[i][j]);
              }
            }
          }
        }
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
