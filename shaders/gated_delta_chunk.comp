#version 450
// gated_delta_chunk: one invocation per (value head, state column j), walking the chunks in order.
// Within a chunk it reads the incoming state S0 by each key and query, solves for u by forward
// substitution with A, forms the outputs with B, then updates its column of S once
// (params/gated_delta_chunk.h; the CPU's cpu/delta_rule.cpp). Columns are independent.
// Bindings: 0 q f32 [T, HK, dk], 1 k f32 [T, HK, dk], 2 v f32 [T, HV, dv], 3 g f32 [T, HV],
// 4 beta f32 [T, HV], 5 scratch f32 (ab and r from gated_delta_chunk_prep),
// 6 state f32 [n_heads, dk, dv] (heads from head_first; read and written), 7 out f32 [T, HV, dv].
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/gated_delta_chunk.h"

#define MAX_CHUNK 64

layout(std430, binding = 0) readonly buffer Q { float q[]; };
layout(std430, binding = 1) readonly buffer K { float k[]; };
layout(std430, binding = 2) readonly buffer V { float v[]; };
layout(std430, binding = 3) readonly buffer G { float g[]; };
layout(std430, binding = 4) readonly buffer Beta { float beta[]; };
layout(std430, binding = 5) readonly buffer Scratch { float scratch[]; };
layout(std430, binding = 6) buffer State { float S[]; };
layout(std430, binding = 7) writeonly buffer Out { float out_[]; };

void main() {
  const uint C = p.chunk, dk = p.dk, dv = p.dv, n_chunks = (p.T + C - 1) / C;
  const uint n = p.n_heads * dv;
  for (uint item = global_index(); item < n; item += global_stride()) {
    const uint hh = item / dv, j = item % dv, h = p.head_first + hh, kh = h / (p.HV / p.HK);
    const uint s0 = p.state_offset + hh * dk * dv + j;
    float u[MAX_CHUNK];
    float gamma[MAX_CHUNK];
    for (uint c = 0; c < n_chunks; ++c) {
      const uint t0 = c * C, L = min(C, p.T - t0);
      const uint base = p.ab_offset + (h * n_chunks + c) * 2 * C * C;
      float acc = 0.0;
      for (uint i = 0; i < L; ++i) gamma[i] = acc += g[p.g_offset + (t0 + i) * p.HV + h];
      for (uint i = 0; i < L; ++i) {
        const uint t = t0 + i, row = (t * p.HK + kh) * dk;
        const float rq = scratch[p.r_offset + (t * p.HV + h) * 2] * p.scale, rk = scratch[p.r_offset + (t * p.HV + h) * 2 + 1];
        float sk = 0.0, sq = 0.0;  // S0^T k^_i and S0^T q^_i in column j
        for (uint a = 0; a < dk; ++a) {
          const float s = S[s0 + a * dv];
          sk += s * (k[p.k_offset + row + a] * rk);
          sq += s * (q[p.q_offset + row + a] * rq);
        }
        const float decay = exp(gamma[i]), b = beta[p.beta_offset + t * p.HV + h];
        float ui = b * (v[p.v_offset + (t * p.HV + h) * dv + j] - decay * sk);
        for (uint jj = 0; jj < i; ++jj) ui -= scratch[base + i * C + jj] * u[jj];
        u[i] = ui;
        float o = decay * sq;
        for (uint jj = 0; jj <= i; ++jj) o += scratch[base + C * C + i * C + jj] * u[jj];
        out_[p.out_offset + (t * p.HV + h) * dv + j] = o;
      }
      const float last = gamma[L - 1], chunk_decay = exp(last);
      for (uint jj = 0; jj < L; ++jj) gamma[jj] = exp(last - gamma[jj]);  // now each key's decay to the end
      for (uint a = 0; a < dk; ++a) {
        float s = S[s0 + a * dv] * chunk_decay;
        for (uint jj = 0; jj < L; ++jj) {
          const uint row = ((t0 + jj) * p.HK + kh) * dk;
          const float rk = scratch[p.r_offset + ((t0 + jj) * p.HV + h) * 2 + 1];
          s += (gamma[jj] * (k[p.k_offset + row + a] * rk)) * u[jj];
        }
        S[s0 + a * dv] = s;
      }
    }
  }
}
