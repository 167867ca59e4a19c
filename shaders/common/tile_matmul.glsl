// The tile machinery of the prefill products y[r, n] = x[r] . w[n] (moe_grouped, matmul_tiled_q,
// matmul_tiled): a workgroup of 256 invocations (pipelines.cpp) computes 64 rows x 128 weight rows,
// K in slices of 32. Each slice's weights are dequantized once into shared memory as f32 (each is
// then used by all 64 rows) while the next slice's x and raw weights load into registers.
// An invocation owns 8 rows x 4 weight rows, read as vec4s along k: per 4 k a warp loads 8 row
// vec4s (4 addresses each) and 4 weight vec4s (8 addresses each) for 128 FMAs per lane; the
// 36-float row stride puts those addresses in distinct banks, one wavefront per load.
// An invocation's rows are 8 apart (8 i + tile_row_lo), so each group of 8 rows spans all warps:
// the groups past the tile's last real row are skipped by the whole workgroup alike, and a tile
// costs the FMAs of its real rows rounded up to 8 (20 real rows: 24, not 64).
// Each output is one fma chain over k in ascending order, whatever the tile holds, so how rows are
// batched never changes the bits. Quantized values are fma(q, scale, bias): q * scale is exact in
// f32 (at most 8 + 11 significant bits), so this rounds as format's dequantizer (q * scale, then
// + bias).
// The including shader defines, before including: TILE_X(i) and TILE_X4(i), float i and vec4 i of
// its f32 x binding; with Q_BITS, TILE_Q_SRC (the type locating a weight's q words, passed through)
// and TILE_Q_WORD(src, i), word i there.
#ifndef MOEFLUX_TILE_MATMUL_GLSL
#define MOEFLUX_TILE_MATMUL_GLSL

#define TILE 64  // rows of a tile
#define BK 32    // K per slice; divides every group size (32, 64, 128) and every quantized K
#define KV 8     // BK / 4: vec4s of a slice row
#define PAD 9    // vec4s per shared row: KV + 1, so rows 1 apart start 4 banks apart
#define WR 128   // weight rows per workgroup
#define NO_ROW 0xFFFFFFFFu

shared vec4 xs[TILE][PAD];  // x rows of the slice
shared vec4 ws[WR][PAD];    // weight rows of the slice, dequantized

// This invocation's rows are 8 i + tile_row_lo (i < 8).
uint tile_row_lo(uint tid) { return 4 * (tid / 128) + (tid % 32) / 8; }

// Its weight rows j < 4 when the 128 are one matrix's consecutive rows.
uint tile_wrow(uint tid, uint j) { return ((tid / 32) % 4) * 32 + tid % 8 + 8 * j; }

// The x rows this invocation loads: tile_x_row(h) (h < 2), columns tile_x_col + [0, 4) of a slice.
uint tile_x_row(uint tid, uint h) { return tid / 8 + 32 * h; }
uint tile_x_col(uint tid) { return 4 * (tid % 8); }

// x[base + k, base + k + 4), zero past K or for NO_ROW; one vec4 load when `vec4s` (base and K
// multiples of 4).
vec4 tile_x_load(uint base, uint k, uint K, bool vec4s) {
  vec4 v = vec4(0.0);
  if (base != NO_ROW && k < K) {
    if (vec4s) {
      v = TILE_X4((base + k) / 4);
    } else {
      [[unroll]] for (uint c = 0; c < 4; ++c) v[c] = k + c < K ? TILE_X(base + k + c) : 0.0;
    }
  }
  return v;
}

void tile_store_x(uint tid, vec4 xr[2]) {
  [[unroll]] for (uint h = 0; h < 2; ++h) xs[tile_x_row(tid, h)][tid % 8] = xr[h];
}

#ifdef Q_BITS
// The raw words of one 8-value block.
#if Q_BITS == 8
#define TILE_Q_T uvec2
#define TILE_Q_ZERO uvec2(0)
#else
#define TILE_Q_T uint  // the block's 8 values of Q_BITS bits
#define TILE_Q_ZERO 0u
#endif

// The weight rows this invocation loads: tile_q_row(h) (h < 2), 8-column block tile_q_col of a slice.
uint tile_q_row(uint tid, uint h) { return tid / 4 + 64 * h; }
uint tile_q_col(uint tid) { return 8 * (tid % 4); }

// The block at column col (a multiple of 8) of the row whose q words start at word base.
TILE_Q_T tile_q_load(TILE_Q_SRC src, uint base, uint col) {
#if Q_BITS == 8
  return uvec2(TILE_Q_WORD(src, base + col / 4), TILE_Q_WORD(src, base + col / 4 + 1));
#elif Q_BITS == 4
  return TILE_Q_WORD(src, base + col / 8);
#else
  const uint bit = col * Q_BITS, word = base + bit / 32, shift = bit % 32;
  uint q = TILE_Q_WORD(src, word) >> shift;
  if (shift + 8 * Q_BITS > 32) q |= TILE_Q_WORD(src, word + 1) << (32 - shift);
  return q;
#endif
}

// The blocks loaded by tile_q_load, dequantized into the slice's weight rows.
void tile_store_q(uint tid, TILE_Q_T wq[2], float scale[2], float bias[2]) {
  [[unroll]] for (uint h = 0; h < 2; ++h) {
    float v[8];
    [[unroll]] for (uint i = 0; i < 8; ++i) {
#if Q_BITS == 8
      const uint q = ((i < 4 ? wq[h].x : wq[h].y) >> (8 * (i % 4))) & 0xFFu;
#else
      const uint q = (wq[h] >> (Q_BITS * i)) & ((1u << Q_BITS) - 1u);
#endif
      v[i] = fma(q_float(q), scale[h], bias[h]);
    }
    const uint r = tile_q_row(tid, h), c = 2 * (tid % 4);
    ws[r][c] = vec4(v[0], v[1], v[2], v[3]);
    ws[r][c + 1] = vec4(v[4], v[5], v[6], v[7]);
  }
}
#else
// Float weights load as x does: rows tile_w_row(h) (h < 4), columns tile_x_col + [0, 4) of a slice.
uint tile_w_row(uint tid, uint h) { return tid / 8 + 32 * h; }

void tile_store_w(uint tid, vec4 wr[4]) {
  [[unroll]] for (uint h = 0; h < 4; ++h) ws[tile_w_row(tid, h)][tid % 8] = wr[h];
}
#endif

// The slice in shared memory into acc: the FMAs of the row groups holding real rows (groups8 is the
// same for the whole workgroup).
void tile_fma(inout float acc[8][4], uint row_lo, uint wrow[4], uint groups8) {
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

#endif
