#version 450
// gated_delta_chunk_prep: one workgroup per (chunk, value head): the chunk's cumulative log-decay
// and norms in shared memory, then the chunk's A and B matrices (params/gated_delta_chunk.h).
// Bindings: 0 q f32 [T, HK, dk], 1 k f32 [T, HK, dk], 2 g f32 [T, HV], 3 beta f32 [T, HV],
// 4 scratch f32: ab [HV, n_chunks, 2, chunk, chunk] at ab_offset, r [T, HV, 2] at r_offset.
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/gated_delta_chunk.h"

#define MAX_CHUNK 64

layout(std430, binding = 0) readonly buffer Q { float q[]; };
layout(std430, binding = 1) readonly buffer K { float k[]; };
layout(std430, binding = 2) readonly buffer G { float g[]; };
layout(std430, binding = 3) readonly buffer Beta { float beta[]; };
layout(std430, binding = 4) writeonly buffer Scratch { float scratch[]; };

shared float gamma[MAX_CHUNK];
shared float rq[MAX_CHUNK];
shared float rk[MAX_CHUNK];

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint C = p.chunk, dk = p.dk, n_chunks = (p.T + C - 1) / C;
  for (uint item = gl_WorkGroupID.x; item < n_chunks * p.HV; item += gl_NumWorkGroups.x) {
    const uint c = item / p.HV, h = item % p.HV, kh = h / (p.HV / p.HK), t0 = c * C;
    const uint L = min(C, p.T - t0);
    if (tid == 0) {  // the CPU's order: a running float sum
      float acc = 0.0;
      for (uint i = 0; i < L; ++i) gamma[i] = acc += g[p.g_offset + (t0 + i) * p.HV + h];
    }
    for (uint i = tid; i < L; i += WG) {
      const uint row = ((t0 + i) * p.HK + kh) * dk;
      float sq = 0.0, sk = 0.0;
      for (uint a = 0; a < dk; ++a) {
        sq += q[p.q_offset + row + a] * q[p.q_offset + row + a];
        sk += k[p.k_offset + row + a] * k[p.k_offset + row + a];
      }
      rq[i] = 1.0 / sqrt(sq + 1e-6);
      rk[i] = 1.0 / sqrt(sk + 1e-6);
      scratch[p.r_offset + ((t0 + i) * p.HV + h) * 2] = rq[i];
      scratch[p.r_offset + ((t0 + i) * p.HV + h) * 2 + 1] = rk[i];
    }
    barrier();
    const uint base = p.ab_offset + (h * n_chunks + c) * 2 * C * C;
    for (uint e = tid; e < L * L; e += WG) {
      const uint i = e / L, j = e % L;
      const uint ri = ((t0 + i) * p.HK + kh) * dk, rj = ((t0 + j) * p.HK + kh) * dk;
      float kk = 0.0, qk = 0.0;
      if (j <= i) {
        for (uint a = 0; a < dk; ++a) {
          const float kj = k[p.k_offset + rj + a] * rk[j];
          kk += (k[p.k_offset + ri + a] * rk[i]) * kj;
          qk += ((q[p.q_offset + ri + a] * rq[i]) * p.scale) * kj;
        }
      }
      const float decay = exp(gamma[i] - gamma[j]);
      scratch[base + i * C + j] = j < i ? beta[p.beta_offset + (t0 + i) * p.HV + h] * decay * kk : 0.0;
      scratch[base + C * C + i * C + j] = j <= i ? decay * qk : 0.0;
    }
    barrier();  // shared gamma and norms are rewritten for the next item
  }
}
