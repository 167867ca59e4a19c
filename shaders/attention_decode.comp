#version 450
// attention_decode: causal GQA attention of a few query rows over chunks of keys (decode), as
// attention_split computes it but in a few short steps, for head dimensions that are multiples
// of 4. A workgroup takes one (query row t, KV head) item, every query head of its group among
// the dispatch's rows, and one chunk of `chunk_size` keys:
//  0. the chunk's K and V rows go to shared memory, every load issued before the first store (one
//     memory round trip);
//  1. one invocation per (head, key): the score q . k * scale (-inf for keys the row does not see);
//  2. one per (head, key): the head's max over the chunk and p = exp(s - max);
//  3. one per (head, 4 output dims): o = sum_j p_j v_j and l = sum_j p_j, in ascending j.
// It writes the chunk's (max, sum, o) for attention_combine (the host takes attention_split for
// contexts of a single chunk). Keys past the bound ones are never read.
// Bindings: 0 q f32 [rows, D], 1 k f32 [keys, nkv, D], 2 v f32 [keys, nkv, Dv] (each also as
// vec4s, read so only with `aligned`), 3 partial f32 [rows, n_chunks, 4 + Dv] (m, l, two unused
// floats, o). The host (ops/attention.cpp's decode_chunk) keeps chunk_size * (D / 4 + Dv / 4 + 2)
// <= KV_VEC4S, group * (chunk_size + 1) <= S_MAX and group <= S_MAX / 8.
#include "common/types.glsl"
#include "common/grid.glsl"
#include "common/attention.glsl"
#include "params/attention.h"

// Shared memory within 32 KiB: what lavapipe and most GPUs give a workgroup.
#define KV_VEC4S 1760  // the chunk's K and V rows, each row padded by one vec4 (27.5 KiB)
#define S_MAX 512      // scores of (head, key): group * (chunk_size + 1)
#define LOADS 7        // vec4 loads per invocation in step 0: KV_VEC4S / WG at WG = 256

layout(std430, binding = 0) readonly buffer Q { float q[]; };
layout(std430, binding = 0) readonly buffer Q4 { vec4 q4[]; };
layout(std430, binding = 1) readonly buffer K { float k[]; };
layout(std430, binding = 1) readonly buffer K4 { vec4 k4[]; };
layout(std430, binding = 2) readonly buffer V { float v[]; };
layout(std430, binding = 2) readonly buffer V4 { vec4 v4[]; };
layout(std430, binding = 3) writeonly buffer Out { float out_[]; };

shared vec4 kv[KV_VEC4S];    // K rows [key][D / 4 + 1], then V rows [key][Dv / 4 + 1]
shared float scores[S_MAX];  // [head][key], rows of chunk_size + 1 (no bank conflicts)
shared float probs[S_MAX];   // as scores
shared float maxes[S_MAX / 8];

// The vec4 at element `at` (a multiple of 4 from the row's start): one load when aligned.
#define LOAD4(buf, buf4, at) \
  (p.aligned != 0 ? buf4[(at) / 4] : vec4(buf[at], buf[(at) + 1], buf[(at) + 2], buf[(at) + 3]))

void main() {
  const uint tid = gl_LocalInvocationID.x, C = p.chunk_size, G = p.group, sp = C + 1;
  const uint d4n = p.D / 4, v4n = p.Dv / 4, kp = d4n + 1, vp = v4n + 1, v_at = C * kp;
  const uint n_k = C * d4n, n_kv = n_k + C * v4n;
  const uint g_first = p.row0 / G, items = (p.row0 + p.rows - 1) / G - g_first + 1;
  const uint chunks_here = (p.key_count + C - 1) / C;
  for (uint item = gl_WorkGroupID.y; item < items; item += gl_NumWorkGroups.y) {
    const uint g = g_first + item, t = g / p.nkv, kvh = g % p.nkv;
    const uint position = p.n_past + t, first = first_key(position, p.window);
    for (uint chunk = gl_WorkGroupID.x; chunk < chunks_here; chunk += gl_NumWorkGroups.x) {
      const uint c0 = p.key_begin + chunk * C;
      const uint lo = max(c0, first), hi = min(min(c0 + C, p.key_begin + p.key_count), position + 1);
      // 0. K and V of keys [c0, c0 + C) that the row sees (zeros elsewhere).
      vec4 buf[LOADS];
      [[unroll]] for (uint i = 0; i < LOADS; ++i) {
        const uint e = tid + i * WG;
        buf[i] = vec4(0.0);
        if (e < n_k) {
          const uint j = e / d4n, key = c0 + j;
          if (key >= lo && key < hi) {
            buf[i] = LOAD4(k, k4, p.k_first + ((key - p.key_begin) * p.nkv + kvh) * p.D + 4 * (e % d4n));
          }
        } else if (e < n_kv) {
          const uint j = (e - n_k) / v4n, key = c0 + j;
          if (key >= lo && key < hi) {
            buf[i] = LOAD4(v, v4, p.v_first + ((key - p.key_begin) * p.nkv + kvh) * p.Dv + 4 * ((e - n_k) % v4n));
          }
        }
      }
      barrier();  // the previous chunk's reads of shared memory are done
      [[unroll]] for (uint i = 0; i < LOADS; ++i) {
        const uint e = tid + i * WG;
        if (e < n_k) {
          kv[e / d4n * kp + e % d4n] = buf[i];
        } else if (e < n_kv) {
          kv[v_at + (e - n_k) / v4n * vp + (e - n_k) % v4n] = buf[i];
        }
      }
      barrier();
      // 1. Scores, with four partial sums for the dot product's latency.
      for (uint e = tid; e < G * C; e += WG) {
        const uint h = e % G, j = e / G, key = c0 + j, qrow = g * G + h;
        float s = NEG_INF;
        if (key >= lo && key < hi && qrow >= p.row0 && qrow < p.row0 + p.rows) {
          const uint q_at = p.q_first + (qrow - p.row0) * p.D;
          vec4 acc = vec4(0.0);
          for (uint d = 0; d < d4n; ++d) acc += LOAD4(q, q4, q_at + 4 * d) * kv[j * kp + d];
          s = ((acc.x + acc.y) + (acc.z + acc.w)) * p.scale;
        }
        scores[h * sp + j] = s;
      }
      barrier();
      // 2. Probabilities against the chunk's max per head (a chunk without keys: all 0).
      for (uint e = tid; e < G * C; e += WG) {
        const uint h = e % G, j = e / G;
        float m = NEG_INF;
        for (uint i = 0; i < C; ++i) m = max(m, scores[h * sp + i]);
        probs[h * sp + j] = m == NEG_INF ? 0.0 : exp(scores[h * sp + j] - m);
        if (j == 0) maxes[h] = m;
      }
      barrier();
      // 3. Values: o and l per (head, 4 output dims).
      for (uint e = tid; e < G * v4n; e += WG) {
        const uint h = e / v4n, c = e % v4n, qrow = g * G + h;
        if (qrow < p.row0 || qrow >= p.row0 + p.rows) continue;  // a head of another dispatch
        vec4 o = vec4(0.0);
        float l = 0.0;
        for (uint j = 0; j < C; ++j) {
          const float pj = probs[h * sp + j];
          o += pj * kv[v_at + j * vp + c];
          l += pj;
        }
        const uint row = qrow - p.row0;
        const uint at = p.out_first + (row * p.n_chunks + p.chunk_first + chunk) * (4 + p.Dv);
        if (c == 0) {
          out_[at] = maxes[h];
          out_[at + 1] = l;
        }
        [[unroll]] for (uint i = 0; i < 4; ++i) out_[at + 4 + 4 * c + i] = o[i];
      }
    }
  }
}
