#version 450
// attention_split (flash-decoding): causal GQA attention of the flat rows (t * nh + h) over one
// chunk of keys per workgroup. A workgroup takes up to `heads` query heads that share a KV head at
// one query row t, so each K and V row is read once for all of them, and walks its chunk in blocks
// of `block` keys with an online softmax:
//  1. scores: lanes over (key, 16-float slice of D) load K as vec4s (neighbouring lanes,
//     neighbouring vec4s) and multiply them with every head's q; the partial dot products go to
//     shared memory, then one lane per (head, key) sums its slices;
//  2. probabilities: per (head, key) the block's max, exp(s - max) into shared memory; the first
//     key's lane keeps the running max and the factor (alpha) that rescales the earlier keys;
//  3. values: lanes over (4 output dims, key subset, head subset), o = o * alpha + sum_j p_j v_j
//     and l likewise; the key subsets are summed once per chunk.
// Three barriers per block; the next block's K and V are loaded while this one is computed.
// Writes the chunk's (max, sum, unnormalized o) per row for attention_combine, or with `normalize`
// (one chunk) o * (1 / sum), as the CPU's softmax multiplies by the reciprocal. Keys a row does
// not see are never read. Geometry (`heads`, `block`) comes from the host (ops/attention.cpp).
// Bindings: 0 q f32 [rows, D], 1 k f32 [keys, nkv, D], 2 v f32 [keys, nkv, Dv],
// 3 out f32 [rows, Dv] or partial f32 [rows, n_chunks, 4 + Dv rounded up to 4] (m, l, two unused
// floats, o: attention_combine reads o as vec4s). q, k and v are also bound as vec4
// arrays, read only with `aligned`. Every reduction goes through shared memory: one variant for
// every device.
#include "common/types.glsl"
#include "common/grid.glsl"
#include "common/attention.glsl"
#include "params/attention.h"

// The shared arrays assume WG = 128 (pipelines.cpp) and D, Dv <= 512.
#define HB 8          // query heads per workgroup at most (`heads`)
#define KPL 2         // keys per score lane and block
#define DPL 4         // vec4s per score lane and key: slices of 16 floats of D
#define KB_MAX 64     // keys per block at most (`block`, a multiple of 4)
#define VPL 8         // keys per value lane loaded together (a round)
#define SCRATCH 4096  // floats: partial dot products (<= 2560), then o per key subset (<= WG * HB * 4)

layout(std430, binding = 0) readonly buffer Q { float q[]; };
layout(std430, binding = 0) readonly buffer Q4 { vec4 q4[]; };
layout(std430, binding = 1) readonly buffer K { float k[]; };
layout(std430, binding = 1) readonly buffer K4 { vec4 k4[]; };
layout(std430, binding = 2) readonly buffer V { float v[]; };
layout(std430, binding = 2) readonly buffer V4 { vec4 v4[]; };
layout(std430, binding = 3) writeonly buffer Out { float out_[]; };

shared float scratch[SCRATCH];
shared float scores[HB * KB_MAX];         // [head][key], -inf past the block's keys up to `block`
shared float probs[KB_MAX * HB];          // [key][head]
shared float l_parts[KB_MAX / VPL * HB];  // l per (key subset, head)
shared float m_run[2][HB];                // the running max per head, before and after a block
shared float alpha[HB];                   // exp(old max - new max) per head

vec4 kr[KPL][DPL];  // this lane's slices of the block's keys
vec4 vr[VPL];       // this lane's vec4 of the round's values

// The vec4 number i of a row of n floats at element `at`: one vec4 load when aligned, else floats
// (zero past n).
#define LOAD4(buf, buf4, at, i, n)                                                                   \
  (p.aligned != 0 ? buf4[(at) / 4 + (i)]                                                          \
                  : vec4(buf[(at) + 4 * (i)], 4 * (i) + 1 < (n) ? buf[(at) + 4 * (i) + 1] : 0.0,   \
                         4 * (i) + 2 < (n) ? buf[(at) + 4 * (i) + 2] : 0.0,                         \
                         4 * (i) + 3 < (n) ? buf[(at) + 4 * (i) + 3] : 0.0))

uint k_row(uint key, uint kvh) { return p.k_first + ((key - p.key_begin) * p.nkv + kvh) * p.D; }
uint v_row(uint key, uint kvh) { return p.v_first + ((key - p.key_begin) * p.nkv + kvh) * p.Dv; }

// Score lane (slice s, key group kg): keys kg + kgroups * u of the block at b0 (nb keys).
void load_keys(uint b0, uint nb, uint kvh, uint s, uint kg, uint slices, uint kgroups) {
  const uint d4_end = (p.D + 3) / 4;
  [[unroll]] for (uint u = 0; u < KPL; ++u) {
    const uint j = kg + kgroups * u;
    const uint at = k_row(b0 + min(j, nb - 1), kvh);
    [[unroll]] for (uint i = 0; i < DPL; ++i) {
      const uint d4 = s + slices * i;
      kr[u][i] = kg < kgroups && j < nb && d4 < d4_end ? LOAD4(k, k4, at, d4, p.D) : vec4(0.0);
    }
  }
}

// Value lane (column c, key subset ks of ksplit): keys j0 + ks + ksplit * w of the block at b0.
void load_values(uint b0, uint nb, uint j0, uint kvh, bool lane_on, uint c, uint ks, uint ksplit) {
  [[unroll]] for (uint w = 0; w < VPL; ++w) {
    const uint j = j0 + ks + ksplit * w;
    vr[w] = lane_on && j < nb ? LOAD4(v, v4, v_row(b0 + j, kvh), c, p.Dv) : vec4(0.0);
  }
}

// One finished row-column: o (4 dims of column c), the sum l and the max m of a chunk.
void write_out(uint row, uint c, vec4 o, float l, float m, uint chunk) {
  if (p.normalize != 0) {
    const float inv_sum = 1.0 / l;
    for (uint i = 0; i < 4; ++i) {
      const uint d = 4 * c + i;
      if (d < p.Dv) out_[p.out_first + row * p.Dv + d] = o[i] * inv_sum;
    }
  } else {
    const uint at = p.out_first + (row * p.n_chunks + p.chunk_first + chunk) * (4 + 4 * ((p.Dv + 3) / 4));
    if (c == 0) {
      out_[at] = m;
      out_[at + 1] = l;
    }
    for (uint i = 0; i < 4; ++i) {
      const uint d = 4 * c + i;
      if (d < p.Dv) out_[at + 4 + d] = o[i];
    }
  }
}

void main() {
  const uint tid = gl_LocalInvocationID.x;
  // Score lanes: `slices` lanes per key, lane s reading vec4s s + slices * i of it.
  const uint slices = (p.D + 4 * DPL - 1) / (4 * DPL), kgroups = WG / slices;
  const uint s = tid % slices, kg = tid / slices;
  // Value lanes: `cols` lanes per (key subset, head subset), each 4 output dims of hpl heads.
  const uint cols = (p.Dv + 3) / 4;
  const uint ksplit = min((p.block + VPL - 1) / VPL, WG / cols);
  const uint hsplit = clamp(WG / (cols * ksplit), 1, p.heads), hpl = (p.heads + hsplit - 1) / hsplit;
  const uint c = tid % cols, ks = tid / cols % ksplit, hs = tid / (cols * ksplit);
  const bool v_lane = hs < hsplit;
  // Items: (t, KV head) pairs g = t * nkv + kvh (flat rows g * group + [0, group)) in batches of heads.
  const uint batches = (p.group + p.heads - 1) / p.heads;
  const uint g_first = p.row0 / p.group, items = ((p.row0 + p.rows - 1) / p.group - g_first + 1) * batches;
  const uint chunks_here = (p.key_count + p.chunk_size - 1) / p.chunk_size;
  for (uint item = gl_WorkGroupID.y; item < items; item += gl_NumWorkGroups.y) {
    const uint g = g_first + item / batches, t = g / p.nkv, kvh = g % p.nkv;
    const uint h0 = g * p.group + item % batches * p.heads;
    const uint lo_row = max(h0, p.row0), hi_row = min(min(h0 + p.heads, (g + 1) * p.group), p.row0 + p.rows);
    if (lo_row >= hi_row) continue;  // a batch outside this dispatch's rows
    const uint nhb = hi_row - lo_row, r0 = lo_row - p.row0;  // heads here, the first one's row
    const uint position = p.n_past + t, first = first_key(position, p.window);
    for (uint chunk = gl_WorkGroupID.x; chunk < chunks_here; chunk += gl_NumWorkGroups.x) {
      const uint c0 = p.key_begin + chunk * p.chunk_size;
      const uint lo = max(c0, first);
      const uint hi = min(min(c0 + p.chunk_size, p.key_begin + p.key_count), position + 1);
      if (lo < hi) {
        load_keys(lo, min(p.block, hi - lo), kvh, s, kg, slices, kgroups);
        load_values(lo, min(p.block, hi - lo), 0, kvh, v_lane, c, ks, ksplit);
      }
      barrier();  // the previous item's last reads of shared memory are done
      if (tid < HB) m_run[0][tid] = NEG_INF;
      vec4 o[HB];
      float l[HB];
      [[unroll]] for (uint i = 0; i < HB; ++i) {
        o[i] = vec4(0.0);
        l[i] = 0.0;
      }
      uint par = 0;  // m_run[par]: the max before the current block
      for (uint b0 = lo; b0 < hi; b0 += p.block) {
        const uint nb = min(p.block, hi - b0), next = b0 + p.block;
        // 1. Partial dot products of this lane's slices, then the next block's keys.
        float part[KPL][HB];
        [[unroll]] for (uint u = 0; u < KPL; ++u) {
          [[unroll]] for (uint h = 0; h < HB; ++h) part[u][h] = 0.0;
        }
        [[unroll]] for (uint i = 0; i < DPL; ++i) {
          const uint d4 = s + slices * i;
          if (kg >= kgroups || 4 * d4 >= p.D) break;
          [[unroll]] for (uint h = 0; h < HB; ++h) {
            if (h >= nhb) break;
            const vec4 qv = LOAD4(q, q4, p.q_first + (r0 + h) * p.D, d4, p.D);
            [[unroll]] for (uint u = 0; u < KPL; ++u) part[u][h] += dot(qv, kr[u][i]);
          }
        }
        if (next < hi) load_keys(next, min(p.block, hi - next), kvh, s, kg, slices, kgroups);
        // [head][key][slice], rows of slices + 1 floats: neither the writes (lanes over slices)
        // nor the reads (lanes over keys) fall in one bank.
        [[unroll]] for (uint u = 0; u < KPL; ++u) {
          const uint j = kg + kgroups * u;
          if (kg >= kgroups || j >= nb) break;
          [[unroll]] for (uint h = 0; h < HB; ++h) {
            if (h >= nhb) break;
            scratch[(h * p.block + j) * (slices + 1) + s] = part[u][h];
          }
        }
        barrier();
        for (uint e = tid; e < nhb * p.block; e += WG) {
          const uint h = e / p.block, j = e % p.block;
          float sum = 0.0;
          if (j < nb) {
            for (uint i = 0; i < slices; ++i) sum += scratch[(h * p.block + j) * (slices + 1) + i];
          }
          scores[h * KB_MAX + j] = j < nb ? sum * p.scale : NEG_INF;
        }
        barrier();
        // 2. Probabilities against the new running max.
        for (uint e = tid; e < nhb * nb; e += WG) {
          const uint h = e / nb, j = e % nb;
          vec4 mx = vec4(NEG_INF);
          for (uint i = h * KB_MAX; i < h * KB_MAX + nb; i += 4) {
            mx = max(mx, vec4(scores[i], scores[i + 1], scores[i + 2], scores[i + 3]));
          }
          const float m_old = m_run[par][h], m_new = max(m_old, max(max(mx.x, mx.y), max(mx.z, mx.w)));
          probs[j * HB + h] = exp(scores[h * KB_MAX + j] - m_new);
          if (j == 0) {
            m_run[par ^ 1][h] = m_new;
            alpha[h] = exp(m_old - m_new);  // 0 for the first block (m_old = -inf; m_new is finite)
          }
        }
        par ^= 1;
        barrier();
        // 3. Values, in rounds of VPL keys per lane; the first round was loaded in advance.
        if (v_lane) {
          [[unroll]] for (uint i = 0; i < HB; ++i) {
            const uint h = hs * hpl + i;
            if (i >= hpl || h >= nhb) break;
            o[i] *= alpha[h];
            l[i] *= alpha[h];
          }
          for (uint j0 = 0; j0 < nb; j0 += ksplit * VPL) {
            if (j0 > 0) load_values(b0, nb, j0, kvh, true, c, ks, ksplit);
            [[unroll]] for (uint w = 0; w < VPL; ++w) {
              const uint j = j0 + ks + ksplit * w;
              if (j >= nb) break;
              [[unroll]] for (uint i = 0; i < HB; ++i) {
                const uint h = hs * hpl + i;
                if (i >= hpl || h >= nhb) break;
                const float pj = probs[j * HB + h];
                o[i] += pj * vr[w];
                l[i] += pj;
              }
            }
          }
        }
        if (next < hi) load_values(next, min(p.block, hi - next), 0, kvh, v_lane, c, ks, ksplit);
      }
      // The chunk's state per head: the key subsets summed in order (scratch was last read before
      // the last block's second barrier).
      if (ksplit > 1) {
        if (v_lane) {
          [[unroll]] for (uint i = 0; i < HB; ++i) {
            const uint h = hs * hpl + i;
            if (i >= hpl || h >= nhb) break;
            const uint at = ((ks * p.heads + h) * cols + c) * 4;
            [[unroll]] for (uint x = 0; x < 4; ++x) scratch[at + x] = o[i][x];
            if (c == 0) l_parts[ks * HB + h] = l[i];
          }
        }
        barrier();
        for (uint e = tid; e < nhb * cols; e += WG) {
          const uint h = e / cols, col = e % cols;
          vec4 acc = vec4(0.0);
          float sum = 0.0;
          for (uint kk = 0; kk < ksplit; ++kk) {
            const uint at = ((kk * p.heads + h) * cols + col) * 4;
            acc += vec4(scratch[at], scratch[at + 1], scratch[at + 2], scratch[at + 3]);
            sum += l_parts[kk * HB + h];
          }
          write_out(r0 + h, col, acc, sum, lo < hi ? m_run[par][h] : NEG_INF, chunk);
        }
      } else if (v_lane) {
        [[unroll]] for (uint i = 0; i < HB; ++i) {
          const uint h = hs * hpl + i;
          if (i >= hpl || h >= nhb) break;
          write_out(r0 + h, c, o[i], l[i], lo < hi ? m_run[par][h] : NEG_INF, chunk);
        }
      }
    }
  }
}
