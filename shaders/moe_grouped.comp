#version 450
// moe_grouped: the expert projections of a prefill batch as one tiled product. Rows are the
// (token, slot) pairs sorted by expert, each expert's padded to whole TILE-row tiles, so a tile
// has one expert, whose weights come by address from the batch's table. 64 x 64 output tiles, K in
// slices of 32 through shared memory, 256 invocations each computing 4 x 4 outputs.
// GATE_UP: act[r, n] = silu(gate_e[n] . x[token_r]) * (up_e[n] . x[token_r]); else (down)
// y[r, n] = down_e[n] . act[r]. Padding rows read zeros and are written (never read after).
// Bindings: 0 in f32, 1 plan uint, 2 table uint [E, 6], 3 out f32 [rows, N].
// Defines: Q_BITS (8, 4, 3, 2) or W_F32 | W_F16 | W_BF16; GATE_UP.
#define USE_BUFFER_REFERENCE
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/moe_grouped.h"

#define TILE 64
#define BK 32  // quantized K is a multiple of 32, so a slice never runs past a row nor straddles a group
#define PER 4  // outputs per invocation along each axis: TILE / 16, with WG = 256 (pipelines.cpp)
#define NO_ROW 0xFFFFFFFFu

layout(std430, binding = 0) readonly buffer In { float vin[]; };
layout(std430, binding = 1) readonly buffer Plan { uint plan[]; };
layout(std430, binding = 2) readonly buffer Table { uint table[]; };
layout(std430, binding = 3) writeonly buffer Out { float out_[]; };

#ifdef Q_BITS
layout(buffer_reference, std430, buffer_reference_align = 4) readonly buffer WordRef { uint v[]; };
WordRef w_words;
#define q_words w_words.v
#define s_words w_words.v
#define b_words w_words.v
#include "common/dequant.glsl"
#else
layout(buffer_reference, std430, buffer_reference_align = 4) readonly buffer WeightRef { WEIGHT_T v[]; };
WeightRef w_values;
#endif

shared float xs[TILE][BK + 1];  // +1: rows land in different banks
shared float ws[TILE][BK + 1];
#ifdef GATE_UP
shared float us[TILE][BK + 1];
#endif

// Rows [n0, n0 + TILE) x columns [k0, k0 + BK) of the block at `address` into ws (which 0) or us.
void store_w(uint which, uint m, uint kk, float v) {
#ifdef GATE_UP
  if (which != 0) {
    us[m][kk] = v;
    return;
  }
#endif
  ws[m][kk] = v;
}

void load_w_tile(uvec2 address, uint which, uint n0, uint k0) {
  const uint tid = gl_LocalInvocationID.x;
#ifdef Q_BITS
  w_words = WordRef(address);
  const QuantRows r = QuantRows(0, p.s_first, p.b_first, p.row_words, p.groups, p.group_size, p.scale_bf16);
  for (uint e = tid; e < TILE * (BK / 8); e += WG) {
    const uint m = e / (BK / 8), kk = (e % (BK / 8)) * 8, n = n0 + m;
    float v[8];
    if (n < p.N) {
      dequant8(r, n, k0 + kk, v);
    } else {
      for (uint i = 0; i < 8; ++i) v[i] = 0.0;
    }
    for (uint i = 0; i < 8; ++i) store_w(which, m, kk + i, v[i]);
  }
#else
  w_values = WeightRef(address);
  for (uint e = tid; e < TILE * BK; e += WG) {
    const uint m = e / BK, kk = e % BK, n = n0 + m, k = k0 + kk;
    store_w(which, m, kk, n < p.N && k < p.K ? weight_to_float(w_values.v[n * p.K + k]) : 0.0);
  }
#endif
}

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint tx = tid % 16, ty = tid / 16;
  const uint tiles_n = (p.N + TILE - 1) / TILE;
  for (uint bt = gl_WorkGroupID.y; bt < p.n_tiles; bt += gl_NumWorkGroups.y) {
    const uint expert = plan[p.plan_offset + bt];
    if (expert >= p.E) continue;
    const uint at = p.table_offset + expert * 6;
#ifdef GATE_UP
    const uvec2 gate = uvec2(table[at], table[at + 1]), up = uvec2(table[at + 2], table[at + 3]);
#else
    const uvec2 down = uvec2(table[at + 4], table[at + 5]);
#endif
    for (uint bn = gl_WorkGroupID.x; bn < tiles_n; bn += gl_NumWorkGroups.x) {
      const uint n0 = bn * TILE;
      float acc[PER][PER];
#ifdef GATE_UP
      float acc_u[PER][PER];
#endif
      for (uint i = 0; i < PER; ++i)
        for (uint j = 0; j < PER; ++j) {
          acc[i][j] = 0.0;
#ifdef GATE_UP
          acc_u[i][j] = 0.0;
#endif
        }
      for (uint k0 = 0; k0 < p.K; k0 += BK) {
        for (uint e = tid; e < TILE * BK; e += WG) {
          const uint m = e / BK, kk = e % BK, row = bt * TILE + m, k = k0 + kk;
#ifdef GATE_UP
          const uint token = plan[p.plan_offset + p.n_tiles + row];
          xs[m][kk] = token != NO_ROW && k < p.K ? vin[p.in_offset + token * p.K + k] : 0.0;
#else
          xs[m][kk] = k < p.K ? vin[p.in_offset + row * p.K + k] : 0.0;
#endif
        }
#ifdef GATE_UP
        load_w_tile(gate, 0, n0, k0);
        load_w_tile(up, 1, n0, k0);
#else
        load_w_tile(down, 0, n0, k0);
#endif
        barrier();
        for (uint kk = 0; kk < BK; ++kk) {
          float a[PER], b[PER];
          for (uint i = 0; i < PER; ++i) a[i] = xs[ty * PER + i][kk];
          for (uint j = 0; j < PER; ++j) b[j] = ws[tx * PER + j][kk];
          for (uint i = 0; i < PER; ++i)
            for (uint j = 0; j < PER; ++j) acc[i][j] += a[i] * b[j];
#ifdef GATE_UP
          for (uint j = 0; j < PER; ++j) b[j] = us[tx * PER + j][kk];
          for (uint i = 0; i < PER; ++i)
            for (uint j = 0; j < PER; ++j) acc_u[i][j] += a[i] * b[j];
#endif
        }
        barrier();
      }
      for (uint i = 0; i < PER; ++i) {
        const uint row = bt * TILE + ty * PER + i;
        for (uint j = 0; j < PER; ++j) {
          const uint n = n0 + tx * PER + j;
          if (n >= p.N) continue;
#ifdef GATE_UP
          const float g = acc[i][j];
          out_[p.out_offset + row * p.N + n] = (g / (1.0 + exp(-g))) * acc_u[i][j];
#else
          out_[p.out_offset + row * p.N + n] = acc[i][j];
#endif
        }
      }
    }
  }
}
