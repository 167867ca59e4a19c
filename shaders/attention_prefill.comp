#version 450
// attention_prefill: causal GQA attention of many query rows (prefill), flash-attention style in
// fp32. A work item is R = 32 consecutive (query position t, head) pairs of one KV head, t-major
// (group 8: 4 positions x 8 heads; group 1: 32 positions), so every K and V row read serves all R
// rows, and one pass of up to DVP output dimensions (Dv > DVP: several passes, scores recomputed).
// It walks the keys its rows see in tiles of BK with an online softmax; tiles past the last row's
// position are never visited, and keys no row of the item sees are never read. Per tile:
//  1. scores q k^T (R x BK): D in slices of BD floats, the q and k slices staged in shared memory,
//     double-buffered (one barrier per slice; the next slice's loads fly during this one's
//     products). Invocation (ty, tx) computes rows 4ty..4ty+3 x keys tx + 16j, j < 4: 16 products
//     from 8 vec4 loads per 4 dims. Scores a row does not see become -inf.
//  2. each row's tile max from the 16 invocations' partial maxima (shared memory); each invocation
//     turns its scores into probabilities, rescales its outputs and its partial sum, and writes p
//     transposed ([key][row]: one vec4 holds its 4 rows) over the second slice buffer.
//  3. o += p v for the same 4 rows x 8 dims (vec4 columns tx and tx + 16 of the pass), v read
//     straight from memory, four keys' loads in flight: a warp's load covers 256 contiguous bytes
//     of a row, and the workgroup's warps read the same rows, so L1 serves all but the first. The
//     next tile's first q and k slice loads fly meanwhile.
// The partial sums are added once at the end: out = o * (1 / sum), as the CPU's softmax multiplies
// by the reciprocal. Items go heaviest first (the last positions see the most keys).
// Bindings: 0 q f32 [rows / nh, nh, D], 1 k f32 [keys, nkv, D], 2 v f32 [keys, nkv, Dv],
// 3 out f32 [rows / nh, nh, Dv]; q, k and v also as vec4 arrays, read only with `aligned`.
// No defines; D and Dv any size (the host sends D, Dv <= 256 here).
#include "common/types.glsl"
#include "common/grid.glsl"
#include "common/attention.glsl"
#include "params/attention.h"

// The geometry assumes WG = 128 (pipelines.cpp): 8 row groups x 16 key / column lanes.
#define R 32              // (position, head) rows per item
#define BK 64             // keys per tile
#define BD 32             // floats of D per slice
#define DVP 128           // output dimensions per pass
#define SD4 (BD / 4 + 1)  // vec4s per staged row: +1, so 8 lanes reading 8 rows' vec4s hit distinct banks
#define SLICE ((R + BK) * SD4)  // one slice buffer: q rows, then k rows
#define SP4 (R / 4 + 1)   // vec4s per key of p [key][row], padded likewise
#define SR4 5             // vec4s per row of the partials [row][16 lanes], padded likewise
#define NONE 0xFFFFFFFFu
#if R > BK
#error "an item's rows must all see a key of its first tile: R positions at most, BK keys"
#endif

layout(std430, binding = 0) readonly buffer Q { float q[]; };
layout(std430, binding = 0) readonly buffer Q4 { vec4 q4[]; };
layout(std430, binding = 1) readonly buffer K { float k[]; };
layout(std430, binding = 1) readonly buffer K4 { vec4 k4[]; };
layout(std430, binding = 2) readonly buffer V { float v[]; };
layout(std430, binding = 2) readonly buffer V4 { vec4 v4[]; };
layout(std430, binding = 3) writeonly buffer Out { float out_[]; };

shared vec4 sh[2 * SLICE];  // two slice buffers; p [BK][SP4] overlays the second
shared vec4 part[R * SR4];  // per row, one float per key lane: partial maxima, then partial sums

vec4 q_next[R * 8 / 128], k_next[BK * 8 / 128];  // the next slice, in flight
uint q_at[R * 8 / 128];                          // the q rows this invocation stages
vec4 o[4][2];                                    // this invocation's outputs: 4 rows x 2 vec4 columns

// The vec4 number i of a row of n floats at element `at`, read as floats (zero past n; the caller
// checks 4 * i < n): rows that are not vec4-aligned.
#define LOAD4_FLOATS(buf, at, i, n)                                                                \
  vec4(buf[(at) + 4 * (i)], 4 * (i) + 1 < (n) ? buf[(at) + 4 * (i) + 1] : 0.0,                     \
       4 * (i) + 2 < (n) ? buf[(at) + 4 * (i) + 2] : 0.0, 4 * (i) + 3 < (n) ? buf[(at) + 4 * (i) + 3] : 0.0)

uint k_row(uint key, uint kvh) { return p.k_first + ((key - p.key_begin) * p.nkv + kvh) * p.D; }
uint v_row(uint key, uint kvh) { return p.v_first + ((key - p.key_begin) * p.nkv + kvh) * p.Dv; }

// Staging lanes: vec4 tid % 8 of the slice at d0, of rows tid / 8 + 16u (q: u < 2, k: u < 4);
// zeros past D and past keys_hi (those k rows are never read). q rows past the item's end repeat
// its last row (main). Aligned rows load clamped (valid) vec4s unconditionally and zero them
// after, so no branch splits the loads.
void fetch_slice(uint d0, uint k0, uint keys_hi, uint kvh) {
  const uint tid = gl_LocalInvocationID.x, d4 = d0 / 4 + tid % 8, lr = tid / 8;
  const bool d_ok = 4 * d4 < p.D;
  if (p.aligned != 0) {
    const uint d4c = min(d4, p.D / 4 - 1);
    [[unroll]] for (uint u = 0; u < R * 8 / 128; ++u) {
      const vec4 x = q4[q_at[u] / 4 + d4c];
      q_next[u] = d_ok ? x : vec4(0.0);
    }
    [[unroll]] for (uint u = 0; u < BK * 8 / 128; ++u) {
      const uint key = k0 + lr + 16 * u;
      const vec4 x = k4[k_row(min(key, keys_hi - 1), kvh) / 4 + d4c];
      k_next[u] = d_ok && key < keys_hi ? x : vec4(0.0);
    }
  } else {
    [[unroll]] for (uint u = 0; u < R * 8 / 128; ++u) {
      q_next[u] = d_ok ? LOAD4_FLOATS(q, q_at[u], d4, p.D) : vec4(0.0);
    }
    [[unroll]] for (uint u = 0; u < BK * 8 / 128; ++u) {
      const uint key = k0 + lr + 16 * u;
      k_next[u] = d_ok && key < keys_hi ? LOAD4_FLOATS(k, k_row(key, kvh), d4, p.D) : vec4(0.0);
    }
  }
}

void store_slice(uint base) {
  const uint tid = gl_LocalInvocationID.x, c = tid % 8, lr = tid / 8;
  [[unroll]] for (uint u = 0; u < R * 8 / 128; ++u) sh[base + (lr + 16 * u) * SD4 + c] = q_next[u];
  [[unroll]] for (uint u = 0; u < BK * 8 / 128; ++u) sh[base + (R + lr + 16 * u) * SD4 + c] = k_next[u];
}

// acc + a . b as four multiply-adds.
float fma4(vec4 a, vec4 b, float acc) { return ((acc + a.x * b.x + a.y * b.y) + a.z * b.z) + a.w * b.w; }

// o += p v over the tile's first nk keys (those past keys_hi are never read), four keys' loads at
// a time. Aligned rows load unconditionally: the key clamped to the last one (its p is 0 past nk)
// and the column to the pass (columns past it are never written out).
void add_values(uint k0, uint nk, uint kvh, uint dv0, uint dvn) {
  const uint ty = gl_LocalInvocationID.x / 16, tx = gl_LocalInvocationID.x % 16;
  for (uint j0 = 0; j0 < nk; j0 += 4) {
    vec4 vv[4][2];
    if (p.aligned != 0) {
      [[unroll]] for (uint u = 0; u < 4; ++u) {
        const uint at = (v_row(k0 + min(j0 + u, nk - 1), kvh) + dv0) / 4;
        [[unroll]] for (uint cc = 0; cc < 2; ++cc) vv[u][cc] = v4[at + min(tx + 16 * cc, dvn / 4 - 1)];
      }
    } else {
      [[unroll]] for (uint u = 0; u < 4; ++u) {
        const uint at = v_row(k0 + j0 + u, kvh) + dv0;
        [[unroll]] for (uint cc = 0; cc < 2; ++cc) {
          const uint col = tx + 16 * cc;
          vv[u][cc] = j0 + u < nk && 4 * col < dvn ? LOAD4_FLOATS(v, at, col, dvn) : vec4(0.0);
        }
      }
    }
    [[unroll]] for (uint u = 0; u < 4; ++u) {
      const vec4 pv = sh[SLICE + (j0 + u) * SP4 + ty];
      [[unroll]] for (uint i = 0; i < 4; ++i) {
        o[i][0] += pv[i] * vv[u][0];
        o[i][1] += pv[i] * vv[u][1];
      }
    }
  }
}

void main() {
  const uint tid = gl_LocalInvocationID.x, ty = tid / 16, tx = tid % 16;
  const uint T = p.rows / p.nh, t0 = p.row0 / p.nh, pairs = T * p.group;
  const uint blocks = (pairs + R - 1) / R, passes = (p.Dv + DVP - 1) / DVP;
  const uint slices = (p.D + BD - 1) / BD, items = blocks * p.nkv * passes;
  for (uint w = gl_WorkGroupID.x; w < items; w += gl_NumWorkGroups.x) {
    const uint b = blocks - 1 - w / (p.nkv * passes), kvh = w / passes % p.nkv, dv0 = w % passes * DVP;
    const uint g0 = b * R, g_end = min(g0 + R, pairs);
    // The keys any row of the item sees (every row sees at least itself).
    const uint keys_lo = first_key(p.n_past + t0 + g0 / p.group, p.window);
    const uint keys_hi = p.n_past + t0 + (g_end - 1) / p.group + 1;
    [[unroll]] for (uint u = 0; u < R * 8 / 128; ++u) {
      const uint g = min(g0 + tid / 8 + 16 * u, g_end - 1);
      q_at[u] = p.q_first + ((g / p.group) * p.nh + kvh * p.group + g % p.group) * p.D;
    }
    // This invocation's rows: positions, first keys, output offsets (NONE: past the item's end,
    // computed as its last row and not written).
    uint pos[4], first[4], out_at[4];
    float m[4], l[4];
    [[unroll]] for (uint i = 0; i < 4; ++i) {
      const uint g = min(g0 + 4 * ty + i, g_end - 1), t = g / p.group;
      pos[i] = p.n_past + t0 + t;
      first[i] = first_key(pos[i], p.window);
      const bool own = g0 + 4 * ty + i < g_end;
      out_at[i] = own ? p.out_first + (t * p.nh + kvh * p.group + g % p.group) * p.Dv : NONE;
      m[i] = NEG_INF;
      l[i] = 0.0;
      o[i][0] = o[i][1] = vec4(0.0);
    }
    const uint dvn = min(DVP, p.Dv - dv0);  // this pass's dimensions
    fetch_slice(0, keys_lo, keys_hi, kvh);
    for (uint k0 = keys_lo; k0 < keys_hi; k0 += BK) {
      // 1. Scores. Buffer 0's last reads were the previous tile's products (before its barrier
      // below); buffer 1 and p are written only after a barrier of this tile.
      float s[4][4];
      [[unroll]] for (uint i = 0; i < 4; ++i) {
        [[unroll]] for (uint j = 0; j < 4; ++j) s[i][j] = 0.0;
      }
      for (uint sl = 0; sl < slices; ++sl) {
        const uint base = (sl % 2) * SLICE;
        store_slice(base);
        barrier();
        if (sl + 1 < slices) fetch_slice((sl + 1) * BD, k0, keys_hi, kvh);
        [[unroll]] for (uint c = 0; c < BD / 4; ++c) {
          vec4 kv[4];
          [[unroll]] for (uint j = 0; j < 4; ++j) kv[j] = sh[base + (R + tx + 16 * j) * SD4 + c];
          [[unroll]] for (uint i = 0; i < 4; ++i) {
            const vec4 qv = sh[base + (4 * ty + i) * SD4 + c];
            [[unroll]] for (uint j = 0; j < 4; ++j) s[i][j] = fma4(qv, kv[j], s[i][j]);
          }
        }
      }
      // 2. Probabilities against each row's new max.
      [[unroll]] for (uint i = 0; i < 4; ++i) {
        float mx = NEG_INF;
        [[unroll]] for (uint j = 0; j < 4; ++j) {
          const uint key = k0 + tx + 16 * j;
          s[i][j] = key >= first[i] && key <= pos[i] ? s[i][j] * p.scale : NEG_INF;
          mx = max(mx, s[i][j]);
        }
        part[(4 * ty + i) * SR4 + tx / 4][tx % 4] = mx;
      }
      barrier();
      [[unroll]] for (uint i = 0; i < 4; ++i) {
        const uint at = (4 * ty + i) * SR4;
        const vec4 mx = max(max(part[at], part[at + 1]), max(part[at + 2], part[at + 3]));
        const float m_new = max(m[i], max(max(mx.x, mx.y), max(mx.z, mx.w)));
        // m_new is finite: every row sees a key of the item's first tile.
        const float alpha = exp(m[i] - m_new);  // 0 for the first tile (m = -inf)
        float sum = 0.0;
        [[unroll]] for (uint j = 0; j < 4; ++j) {
          s[i][j] = exp(s[i][j] - m_new);
          sum += s[i][j];
        }
        l[i] = l[i] * alpha + sum;
        o[i][0] *= alpha;
        o[i][1] *= alpha;
        m[i] = m_new;
      }
      [[unroll]] for (uint j = 0; j < 4; ++j) {
        sh[SLICE + (tx + 16 * j) * SP4 + ty] = vec4(s[0][j], s[1][j], s[2][j], s[3][j]);
      }
      barrier();
      if (k0 + BK < keys_hi) fetch_slice(0, k0 + BK, keys_hi, kvh);  // in flight during the values
      // 3. Values.
      add_values(k0, min(BK, keys_hi - k0), kvh, dv0, dvn);
    }
    // The row sums: the 16 lanes' partial sums in order (part's last reads came before the last
    // tile's second barrier).
    [[unroll]] for (uint i = 0; i < 4; ++i) part[(4 * ty + i) * SR4 + tx / 4][tx % 4] = l[i];
    barrier();
    [[unroll]] for (uint i = 0; i < 4; ++i) {
      const uint at = (4 * ty + i) * SR4;
      const vec4 sum4 = (part[at] + part[at + 1]) + (part[at + 2] + part[at + 3]);
      const float inv_sum = 1.0 / ((sum4.x + sum4.y) + (sum4.z + sum4.w));
      [[unroll]] for (uint cc = 0; cc < 2; ++cc) {
        const uint d = 4 * (tx + 16 * cc);
        [[unroll]] for (uint e = 0; e < 4; ++e) {
          if (out_at[i] != NONE && d + e < dvn) out_[out_at[i] + dv0 + d + e] = o[i][cc][e] * inv_sum;
        }
      }
    }
  }
}
