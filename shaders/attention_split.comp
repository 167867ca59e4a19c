#version 450
// attention_split (flash-decoding): a workgroup per flat row (t * nh + h) and chunk of keys, with an
// online softmax over blocks of KB keys (scores: a subgroup per key with USE_SUBGROUP, else an
// invocation per key). Writes the chunk's (max, sum, unnormalized o) for attention_combine, or with
// `normalize` (one chunk) o * (1 / sum), as the CPU's softmax multiplies by the reciprocal.
// Bindings: 0 q f32 [rows, D], 1 k f32 [keys, nkv, D], 2 v f32 [keys, nkv, Dv],
// 3 out f32 [rows, Dv] or partial f32 [rows, n_chunks, 2 + Dv]. Defines: USE_SUBGROUP.
#include "common/types.glsl"
#include "common/grid.glsl"
#include "common/attention.glsl"
#include "params/attention.h"

#define KB 64      // keys per block
#define MAX_D 512  // q and k head dimensions up to this
#define OPW 4      // output dimensions per invocation: MAX_D / WG, WG = 128 (pipelines.cpp)

layout(std430, binding = 0) readonly buffer Q { float q[]; };
layout(std430, binding = 1) readonly buffer K { float k[]; };
layout(std430, binding = 2) readonly buffer V { float v[]; };
layout(std430, binding = 3) writeonly buffer Out { float out_[]; };

shared float q_sh[MAX_D];
shared float scores[KB];
shared float probs[KB];

// scores[i] = scale * q . k[b0 + i] for the nb keys of a block.
void block_scores(uint b0, uint nb, uint kvh) {
#ifdef USE_SUBGROUP
  for (uint i = gl_SubgroupID; i < nb; i += gl_NumSubgroups) {
    const uint at = p.k_first + ((b0 + i - p.key_begin) * p.nkv + kvh) * p.D;
    float s = 0.0;
    for (uint d = gl_SubgroupInvocationID; d < p.D; d += gl_SubgroupSize) s += q_sh[d] * k[at + d];
    s = subgroupAdd(s);
    if (subgroupElect()) scores[i] = s * p.scale;
  }
#else
  for (uint i = gl_LocalInvocationID.x; i < nb; i += WG) {
    const uint at = p.k_first + ((b0 + i - p.key_begin) * p.nkv + kvh) * p.D;
    float s = 0.0;
    for (uint d = 0; d < p.D; ++d) s += q_sh[d] * k[at + d];
    scores[i] = s * p.scale;
  }
#endif
}

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint chunks_here = (p.key_count + p.chunk_size - 1) / p.chunk_size;
  const uint key_stride = p.nkv * p.Dv;  // between v rows
  for (uint r = gl_WorkGroupID.y; r < p.rows; r += gl_NumWorkGroups.y) {
    const uint t = (p.row0 + r) / p.nh, kvh = (p.row0 + r) % p.nh / p.group;
    const uint position = p.n_past + t, first = first_key(position, p.window);
    // q_sh is only read between the barriers of a block, so the previous row is done with it.
    for (uint d = tid; d < p.D; d += WG) q_sh[d] = q[p.q_first + r * p.D + d];
    barrier();
    for (uint c = gl_WorkGroupID.x; c < chunks_here; c += gl_NumWorkGroups.x) {
      const uint c0 = p.key_begin + c * p.chunk_size;
      const uint lo = max(c0, first), hi = min(min(c0 + p.chunk_size, p.key_begin + p.key_count), position + 1);
      float m = NEG_INF, l = 0.0, o[OPW];
      for (uint j = 0; j < OPW; ++j) o[j] = 0.0;
      for (uint b0 = lo; b0 < hi; b0 += KB) {
        const uint nb = min(KB, hi - b0);
        block_scores(b0, nb, kvh);
        barrier();
        float block_max = scores[0];
        for (uint i = 1; i < nb; ++i) block_max = max(block_max, scores[i]);
        const float m_new = max(m, block_max);  // finite: the block has a key
        const float alpha = exp(m - m_new);
        for (uint i = tid; i < nb; i += WG) probs[i] = exp(scores[i] - m_new);
        barrier();
        float sum = 0.0;
        for (uint i = 0; i < nb; ++i) sum += probs[i];
        l = l * alpha + sum;
        const uint v_at = p.v_first + ((b0 - p.key_begin) * p.nkv + kvh) * p.Dv;
        for (uint j = 0; j < OPW; ++j) {
          const uint d = tid + j * WG;
          if (d >= p.Dv) break;
          float acc = o[j] * alpha;
          for (uint i = 0; i < nb; ++i) acc += probs[i] * v[v_at + i * key_stride + d];
          o[j] = acc;
        }
        m = m_new;
        barrier();  // the next block rewrites scores and probs
      }
      if (p.normalize != 0) {
        const float inv_sum = 1.0 / l;
        for (uint j = 0; j < OPW; ++j) {
          const uint d = tid + j * WG;
          if (d < p.Dv) out_[p.out_first + r * p.Dv + d] = o[j] * inv_sum;
        }
      } else {
        const uint at = p.out_first + (r * p.n_chunks + p.chunk_first + c) * (2 + p.Dv);
        if (tid == 0) {
          out_[at] = m;
          out_[at + 1] = l;
        }
        for (uint j = 0; j < OPW; ++j) {
          const uint d = tid + j * WG;
          if (d < p.Dv) out_[at + 2 + d] = o[j];
        }
      }
    }
  }
}
