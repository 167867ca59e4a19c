#version 450
// attention_combine: the second pass of attention_split. out[t, h] = (sum_c o_c e^(m_c - M)) *
// (1 / sum_c l_c e^(m_c - M)) with M the largest chunk max; chunks without keys (m = -inf, l = 0,
// o = 0) weigh nothing. A workgroup per flat row (t * nh + h); lanes over (4 output dims, chunk
// subset): each lane merges its chunks online, loading CB of them at once (so up to
// CB * WG / ceil(Dv / 4) chunks cost one memory round trip), then the subsets are merged in order.
// Bindings: 0 partial f32 [rows, n_chunks, state] (state = 4 + Dv rounded up to 4: m, l, two
// unused floats, o; bound as float and as vec4, partial_first a multiple of 4), 1 out f32 [rows, Dv].
// o's floats past Dv are never written; the lanes read them and never write what they become.
#include "common/types.glsl"
#include "common/grid.glsl"
#include "common/attention.glsl"
#include "params/attention_combine.h"

#define CB 8       // chunks per lane loaded together
#define WG_MAX 128  // WG (pipelines.cpp)

layout(std430, binding = 0) readonly buffer Partial { float partial[]; };
layout(std430, binding = 0) readonly buffer Partial4 { vec4 partial4[]; };
layout(std430, binding = 1) writeonly buffer Out { float out_[]; };

shared vec4 o_sh[WG_MAX];
shared float m_sh[WG_MAX], l_sh[WG_MAX];

void main() {
  const uint tid = gl_LocalInvocationID.x, cols = (p.Dv + 3) / 4, state = 4 + 4 * cols;
  const uint csplit = WG / cols, c = tid % cols, cs = tid / cols;
  for (uint row = gl_WorkGroupID.x; row < p.rows; row += gl_NumWorkGroups.x) {
    const uint base = p.partial_first + row * p.n_chunks * state;
    float M = NEG_INF, L = 0.0;
    vec4 acc = vec4(0.0);
    for (uint c0 = cs; cs < csplit && c0 < p.n_chunks; c0 += csplit * CB) {
      float m[CB], l[CB];
      vec4 o[CB];
      for (uint i = 0; i < CB; ++i) {
        const uint chunk = c0 + csplit * i, at = base + chunk * state;
        const bool here = chunk < p.n_chunks;
        m[i] = here ? partial[at] : NEG_INF;
        l[i] = here ? partial[at + 1] : 0.0;
        o[i] = here ? partial4[(at + 4) / 4 + c] : vec4(0.0);
      }
      float m_new = M;
      for (uint i = 0; i < CB; ++i) m_new = max(m_new, m[i]);
      if (m_new == NEG_INF) continue;  // no keys yet
      const float a = exp(M - m_new);  // 0 while M = -inf
      L *= a;
      acc *= a;
      for (uint i = 0; i < CB; ++i) {
        const float w = exp(m[i] - m_new);  // 0 for a chunk without keys
        L += l[i] * w;
        acc += o[i] * w;
      }
      M = m_new;
    }
    barrier();  // the previous row's reads of the shared arrays are done
    o_sh[tid] = acc;
    m_sh[tid] = M;
    l_sh[tid] = L;
    barrier();
    if (tid < cols) {
      float m_all = NEG_INF;
      for (uint s = 0; s < csplit; ++s) m_all = max(m_all, m_sh[s * cols + c]);
      float sum = 0.0;
      vec4 o_all = vec4(0.0);
      for (uint s = 0; s < csplit; ++s) {
        const float w = exp(m_sh[s * cols + c] - m_all);  // 0 for a subset without keys
        sum += l_sh[s * cols + c] * w;
        o_all += o_sh[s * cols + c] * w;
      }
      const float inv_sum = 1.0 / sum;
      for (uint i = 0; i < 4; ++i) {
        const uint d = 4 * c + i;
        if (d < p.Dv) out_[p.out_first + row * p.Dv + d] = o_all[i] * inv_sum;
      }
    }
  }
}
