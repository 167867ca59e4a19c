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
//
// With STEP (attention_decode_step: one decode row, its inputs as projected) the workgroups also do
// what attention_inputs and attention_combine do around it, so the layer has one step for all three:
//  -. while the chunk's loads are in flight, q of the group's heads (and, in the workgroup whose
//     chunk holds the new row's key, that key) is normalised per head and rotated into shared
//     memory, in front of the K rows; that workgroup writes the new key and value into the caches
//     and into its shared rows (the cache rows are not read before: nothing else reads them);
//  4. after its states, each workgroup counts its chunk for its KV head; the last one merges every
//     chunk's state into out as attention_combine does, and sets the counter back to 0.
// With x_scale, q, the new key and value come from a folded norm (backend.h's FoldedNorm): the
// workgroups also add up x's squares while their loads are in flight and scale the three by
// 1 / rms(x) before the per-head norms.
// Bindings: 0 q f32 [nh, D], 1 cos/sin f32 [2, 1, half], 2 q_norm, 3 k_norm WEIGHT_T [D], 4 the new
// key f32 [nkv, D], 5 the new value f32 [nkv, Dv] (q, key and value read as vec4s), 6 x f32 [H]
// (vec4s), 7 k cache, 8 v cache (read and written), 9 partial, 10 out f32 [nh, Dv], 11 counters
// uint [nkv]. The host
// (ops/attention.cpp's step_chunk) also keeps (group + 1) * D / 4 <= S_MAX, (group + 1) * D / 4 +
// Dv / 4 <= 2 * WG and the q rows inside KV_VEC4S. Defines: W_F32 | W_F16 | W_BF16 (the norms).
#include "common/types.glsl"
#include "common/grid.glsl"
#include "common/attention.glsl"
#ifdef STEP
#include "params/attention_step.h"
#else
#include "params/attention.h"
#endif

// Shared memory within 32 KiB: what lavapipe and most GPUs give a workgroup.
#define KV_VEC4S 1760  // the chunk's K and V rows, each row padded by one vec4 (27.5 KiB)
#define S_MAX 512      // scores of (head, key): group * (chunk_size + 1)
#define LOADS 7        // vec4 loads per invocation in step 0: KV_VEC4S / WG at WG = 256

#ifdef STEP
layout(std430, binding = 0) readonly buffer Q4 { vec4 q4[]; };
layout(std430, binding = 1) readonly buffer CosSin { float cs[]; };
layout(std430, binding = 2) readonly buffer QNorm { WEIGHT_T qn[]; };
layout(std430, binding = 3) readonly buffer KNorm { WEIGHT_T kn[]; };
layout(std430, binding = 4) readonly buffer KNew4 { vec4 knew4[]; };
layout(std430, binding = 5) readonly buffer VNew4 { vec4 vnew4[]; };
layout(std430, binding = 6) readonly buffer X4 { vec4 x4[]; };
layout(std430, binding = 7) buffer K { float k[]; };
layout(std430, binding = 7) buffer K4 { vec4 k4[]; };
layout(std430, binding = 8) buffer V { float v[]; };
layout(std430, binding = 8) buffer V4 { vec4 v4[]; };
// The last workgroup of a KV head reads every workgroup's states: coherent, past L1.
layout(std430, binding = 9) coherent buffer Partial { float out_[]; };
layout(std430, binding = 9) coherent buffer Partial4 { vec4 partial4[]; };
layout(std430, binding = 10) writeonly buffer Out { float attn[]; };
layout(std430, binding = 11) coherent buffer Counter { uint counter[]; };
#define ROW0 0u
#define ROWS (p.nkv * p.group)
#define CHUNK_FIRST 0u
#define STATES_FIRST p.partial_first
#else
layout(std430, binding = 0) readonly buffer Q { float q[]; };
layout(std430, binding = 0) readonly buffer Q4 { vec4 q4[]; };
layout(std430, binding = 1) readonly buffer K { float k[]; };
layout(std430, binding = 1) readonly buffer K4 { vec4 k4[]; };
layout(std430, binding = 2) readonly buffer V { float v[]; };
layout(std430, binding = 2) readonly buffer V4 { vec4 v4[]; };
layout(std430, binding = 3) writeonly buffer Out { float out_[]; };
#define ROW0 p.row0
#define ROWS p.rows
#define CHUNK_FIRST p.chunk_first
#define STATES_FIRST p.out_first
#endif

shared vec4 kv[KV_VEC4S];    // K rows [key][D / 4 + 1], then V rows [key][Dv / 4 + 1]
shared float scores[S_MAX];  // [head][key], rows of chunk_size + 1 (no bank conflicts)
shared float probs[S_MAX];   // as scores
shared float maxes[S_MAX / 8];
#ifdef STEP
shared bool last_chunk;  // this workgroup counted its KV head's last chunk
#endif

// The vec4 at element `at` (a multiple of 4 from the row's start): one load when aligned.
#define LOAD4(buf, buf4, at) \
  (p.aligned != 0 ? buf4[(at) / 4] : vec4(buf[at], buf[(at) + 1], buf[(at) + 2], buf[(at) + 3]))

#ifdef STEP
#define PREP 2  // prepared vec4s per invocation: (group + 1) * D / 4 + Dv / 4 <= PREP * WG
#define CB 16   // chunks' states per invocation loaded together in step 4

// One prepared item's inputs, loaded with the chunk's keys (one memory round trip for all).
struct StepInput {
  vec4 x;          // as projected
  vec4 w;          // the norm's weights (1 without a norm)
  vec4 cosv, sinv;  // the rotation of its 4 dims (unread past the rotary dims)
};

vec4 norm_weights(bool is_q, uint d) {
  if (p.norm == 0) return vec4(1.0);
  vec4 w;
  [[unroll]] for (uint m = 0; m < 4; ++m) w[m] = is_q ? weight_to_float(qn[p.qn_first + d + m]) : weight_to_float(kn[p.kn_first + d + m]);
  return p.norm == 2 ? 1.0 + w : w;
}

// Items e: q vec4s [0, nq) of KV head kvh's query heads, then with `new_here` the new key's
// [nq, nq + D / 4) and the new value's after them.
void load_inputs(uint kvh, bool new_here, out StepInput in_[PREP]) {
  const uint d4n = p.D / 4, v4n = p.Dv / 4, nq = p.group * d4n, n_items = new_here ? nq + d4n + v4n : nq;
  const uint half4 = p.half_dim / 4;
  [[unroll]] for (uint i = 0; i < PREP; ++i) {
    const uint e = gl_LocalInvocationID.x + i * WG, c = e % d4n;
    in_[i].x = vec4(0.0);
    in_[i].w = vec4(1.0);
    in_[i].cosv = vec4(1.0);
    in_[i].sinv = vec4(0.0);
    if (e >= n_items) continue;
    if (e >= nq + d4n) {
      in_[i].x = vnew4[p.vnew_first / 4 + kvh * v4n + e - nq - d4n];
      continue;
    }
    const bool is_q = e < nq;
    in_[i].x = is_q ? q4[p.q_first / 4 + kvh * nq + e] : knew4[p.knew_first / 4 + kvh * d4n + e - nq];
    in_[i].w = norm_weights(is_q, 4 * c);
    if (c < 2 * half4) {
      const uint j = 4 * (c < half4 ? c : c - half4), s_at = p.cs_first + p.half_dim + j;
      in_[i].cosv = vec4(cs[p.cs_first + j], cs[p.cs_first + j + 1], cs[p.cs_first + j + 2], cs[p.cs_first + j + 3]);
      in_[i].sinv = vec4(cs[s_at], cs[s_at + 1], cs[s_at + 2], cs[s_at + 3]);
    }
  }
}

// This invocation's share of x's squares (x_scale).
float x_squares() {
  float sum = 0.0;
  if (p.x_scale != 0u) {
    for (uint c = gl_LocalInvocationID.x; c < p.H / 4; c += WG) {
      const vec4 xv = x4[p.x_first / 4 + c];
      sum += dot(xv, xv);
    }
  }
  return sum;
}

// q normalised and rotated as attention_inputs does into kv's first rows (one per head, D / 4 + 1
// vec4s apart so that step 1's lanes over heads read different banks); with `new_here` the new key
// into kv[k_at + j_new * kp, + D / 4) and the new value into kv[v_at + j_new * vp, + Dv / 4), both
// also written into the caches (the caller's next barrier fences the last stores). With x_scale,
// all three are scaled by 1 / rms(x) first (x_sq: this invocation's share of its squares).
void prepare_inputs(uint kvh, bool new_here, inout StepInput in_[PREP], uint key_row, uint j_new, uint k_at,
                    uint v_at, uint kp, uint vp, float x_sq) {
  const uint tid = gl_LocalInvocationID.x, d4n = p.D / 4, v4n = p.Dv / 4, nq = p.group * d4n;
  const uint n_items = new_here ? nq + d4n + v4n : nq, half4 = p.half_dim / 4, qp = d4n + 1;
  if (p.x_scale != 0u) probs[tid] = x_sq;  // scratch until step 2 (S_MAX >= WG + 16)
  [[unroll]] for (uint i = 0; i < PREP; ++i) {
    const uint e = tid + i * WG;
    if (e < nq + d4n) scores[e] = dot(in_[i].x, in_[i].x);  // the squares, per vec4 (scratch)
  }
  barrier();
  float x_scale = 1.0;
  if (p.x_scale != 0u) {  // uniform: x's squares summed in two levels of 16
    if (tid < 16) {
      float s = 0.0;
      for (uint i = 0; i < WG / 16; ++i) s += probs[tid * (WG / 16) + i];
      probs[WG + tid] = s;
    }
    barrier();
    float total = 0.0;
    for (uint i = 0; i < 16; ++i) total += probs[WG + i];
    x_scale = 1.0 / sqrt(total / float(p.H) + p.x_eps);
    [[unroll]] for (uint i = 0; i < PREP; ++i) in_[i].x *= x_scale;
  }
  // Normalised per head (the key is head `group`).
  [[unroll]] for (uint i = 0; i < PREP; ++i) {
    const uint e = tid + i * WG, head = e / d4n;
    if (e >= nq + d4n || e >= n_items) continue;
    float inv_rms = 1.0;
    if (p.norm != 0) {
      float sum = 0.0;
      for (uint s = 0; s < d4n; ++s) sum += scores[head * d4n + s];
      inv_rms = 1.0 / sqrt(sum * (x_scale * x_scale) / float(p.D) + p.eps);  // the squares were unscaled
    }
    in_[i].x = (in_[i].x * inv_rms) * in_[i].w;
    kv[head * qp + e % d4n] = in_[i].x;
  }
  barrier();
  // Rotated: (a, b) = (x_j, x_{j + half}) -> (a cos - b sin, b cos + a sin) for j < half.
  [[unroll]] for (uint i = 0; i < PREP; ++i) {
    const uint e = tid + i * WG, c = e % d4n;
    if (e >= nq + d4n || e >= n_items || c >= 2 * half4) continue;
    const bool first_half = c < half4;
    const vec4 other = kv[e / d4n * qp + (first_half ? c + half4 : c - half4)];
    in_[i].x = first_half ? in_[i].x * in_[i].cosv - other * in_[i].sinv : in_[i].x * in_[i].cosv + other * in_[i].sinv;
  }
  barrier();  // every partner read before the rotated values land
  [[unroll]] for (uint i = 0; i < PREP; ++i) {
    const uint e = tid + i * WG;
    if (e < nq) {
      kv[e / d4n * qp + e % d4n] = in_[i].x;
    } else if (e < nq + d4n && e < n_items) {
      const uint c = e - nq;
      kv[k_at + j_new * kp + c] = in_[i].x;
      [[unroll]] for (uint m = 0; m < 4; ++m) k[p.k_first + (key_row * p.nkv + kvh) * p.D + 4 * c + m] = in_[i].x[m];
    } else if (e < n_items) {
      const uint c = e - nq - d4n;
      kv[v_at + j_new * vp + c] = in_[i].x;
      [[unroll]] for (uint m = 0; m < 4; ++m) v[p.v_first + (key_row * p.nkv + kvh) * p.Dv + 4 * c + m] = in_[i].x[m];
    }
  }
}

// out of KV head kvh's query heads: every chunk's state merged as attention_combine does (in
// ascending chunks, CB at a time).
void merge_chunks(uint kvh) {
  const uint v4n = p.Dv / 4, state = 4 + p.Dv;
  for (uint e = gl_LocalInvocationID.x; e < p.group * v4n; e += WG) {
    const uint row = kvh * p.group + e / v4n, c = e % v4n, base = p.partial_first + row * p.n_chunks * state;
    float M = NEG_INF, L = 0.0;
    vec4 acc = vec4(0.0);
    for (uint c0 = 0; c0 < p.n_chunks; c0 += CB) {
      float m[CB], l[CB];
      vec4 o[CB];
      [[unroll]] for (uint i = 0; i < CB; ++i) {
        const uint chunk = c0 + i, at = base + chunk * state;
        const bool here = chunk < p.n_chunks;
        m[i] = here ? out_[at] : NEG_INF;
        l[i] = here ? out_[at + 1] : 0.0;
        o[i] = here ? partial4[(at + 4) / 4 + c] : vec4(0.0);
      }
      float m_new = M;
      [[unroll]] for (uint i = 0; i < CB; ++i) m_new = max(m_new, m[i]);
      if (m_new == NEG_INF) continue;  // no keys yet
      const float a = exp(M - m_new);  // 0 while M = -inf
      L *= a;
      acc *= a;
      [[unroll]] for (uint i = 0; i < CB; ++i) {
        const float w = exp(m[i] - m_new);  // 0 for a chunk without keys
        L += l[i] * w;
        acc += o[i] * w;
      }
      M = m_new;
    }
    const float inv_sum = 1.0 / L;
    [[unroll]] for (uint i = 0; i < 4; ++i) attn[p.out_first + row * p.Dv + 4 * c + i] = acc[i] * inv_sum;
  }
}
#endif

void main() {
  const uint tid = gl_LocalInvocationID.x, C = p.chunk_size, G = p.group, sp = C + 1;
  const uint d4n = p.D / 4, v4n = p.Dv / 4, kp = d4n + 1, vp = v4n + 1;
#ifdef STEP
  const uint k_at = (G + 1) * kp;  // after the rows of q and of the new key (its norm's scratch)
#else
  const uint k_at = 0;
#endif
  const uint v_at = k_at + C * kp;
  const uint n_k = C * d4n, n_kv = n_k + C * v4n;
  const uint g_first = ROW0 / G, items = (ROW0 + ROWS - 1) / G - g_first + 1;
  const uint chunks_here = (p.key_count + C - 1) / C;
  for (uint item = gl_WorkGroupID.y; item < items; item += gl_NumWorkGroups.y) {
    const uint g = g_first + item, t = g / p.nkv, kvh = g % p.nkv;
    const uint position = p.n_past + t, first = first_key(position, p.window);
    for (uint chunk = gl_WorkGroupID.x; chunk < chunks_here; chunk += gl_NumWorkGroups.x) {
      const uint c0 = p.key_begin + chunk * C;
      const uint lo = max(c0, first), hi = min(min(c0 + C, p.key_begin + p.key_count), position + 1);
#ifdef STEP
      const bool new_here = position >= lo && position < hi;  // the new key: from the inputs, not the cache
      const uint skip = position;
#else
      const uint skip = 0xFFFFFFFFu;
#endif
      // 0. K and V of keys [c0, c0 + C) that the row sees (zeros elsewhere).
      vec4 buf[LOADS];
      [[unroll]] for (uint i = 0; i < LOADS; ++i) {
        const uint e = tid + i * WG;
        buf[i] = vec4(0.0);
        if (e < n_k) {
          const uint j = e / d4n, key = c0 + j;
          if (key >= lo && key < hi && key != skip) {
            buf[i] = LOAD4(k, k4, p.k_first + ((key - p.key_begin) * p.nkv + kvh) * p.D + 4 * (e % d4n));
          }
        } else if (e < n_kv) {
          const uint j = (e - n_k) / v4n, key = c0 + j;
          if (key >= lo && key < hi && key != skip) {
            buf[i] = LOAD4(v, v4, p.v_first + ((key - p.key_begin) * p.nkv + kvh) * p.Dv + 4 * ((e - n_k) % v4n));
          }
        }
      }
#ifdef STEP
      StepInput in_[PREP];
      load_inputs(kvh, new_here, in_);
      const float x_sq = x_squares();
#endif
      barrier();  // the previous chunk's reads of shared memory are done
#ifdef STEP
      prepare_inputs(kvh, new_here, in_, position - p.key_begin, position - c0, k_at, v_at, kp, vp, x_sq);
#endif
      [[unroll]] for (uint i = 0; i < LOADS; ++i) {
        const uint e = tid + i * WG;
        if (e < n_k) {
          if (c0 + e / d4n != skip) kv[k_at + e / d4n * kp + e % d4n] = buf[i];
        } else if (e < n_kv) {
          if (c0 + (e - n_k) / v4n != skip) kv[v_at + (e - n_k) / v4n * vp + (e - n_k) % v4n] = buf[i];
        }
      }
      barrier();
      // 1. Scores, with four partial sums for the dot product's latency.
      for (uint e = tid; e < G * C; e += WG) {
        const uint h = e % G, j = e / G, key = c0 + j, qrow = g * G + h;
        float s = NEG_INF;
        if (key >= lo && key < hi && qrow >= ROW0 && qrow < ROW0 + ROWS) {
          vec4 acc = vec4(0.0);
#ifdef STEP
          for (uint d = 0; d < d4n; ++d) acc += kv[h * kp + d] * kv[k_at + j * kp + d];
#else
          const uint q_at = p.q_first + (qrow - ROW0) * p.D;
          for (uint d = 0; d < d4n; ++d) acc += LOAD4(q, q4, q_at + 4 * d) * kv[j * kp + d];
#endif
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
        if (qrow < ROW0 || qrow >= ROW0 + ROWS) continue;  // a head of another dispatch
        vec4 o = vec4(0.0);
        float l = 0.0;
        for (uint j = 0; j < C; ++j) {
          const float pj = probs[h * sp + j];
          o += pj * kv[v_at + j * vp + c];
          l += pj;
        }
        const uint row = qrow - ROW0;
        const uint at = STATES_FIRST + (row * p.n_chunks + CHUNK_FIRST + chunk) * (4 + p.Dv);
        if (c == 0) {
          out_[at] = maxes[h];
          out_[at + 1] = l;
        }
        [[unroll]] for (uint i = 0; i < 4; ++i) out_[at + 4 + 4 * c + i] = o[i];
      }
#ifdef STEP
      // 4. Counted after its states (release); the KV head's last chunk merges them all.
      memoryBarrierBuffer();
      barrier();
      if (tid == 0) last_chunk = atomicAdd(counter[p.counter_first + kvh], 1u) == p.n_chunks - 1u;
      barrier();
      if (last_chunk) {
        memoryBarrierBuffer();  // (acquire)
        merge_chunks(kvh);
        if (tid == 0) counter[p.counter_first + kvh] = 0u;
      }
#endif
    }
  }
}
