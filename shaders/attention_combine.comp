#version 450
// attention_combine: the second pass of attention_split. out[t, h] = (sum_c o_c e^(m_c - M)) *
// (1 / sum_c l_c e^(m_c - M)) with M the largest chunk max; chunks without keys (m = -inf,
// l = 0, o = 0) weigh nothing. A workgroup per flat row (t * nh + h), invocations over output
// dimensions. Bindings: 0 partial f32 [rows, n_chunks, 2 + Dv], 1 out f32 [rows, Dv].
#include "common/types.glsl"
#include "common/grid.glsl"
#include "common/attention.glsl"
#include "params/attention_combine.h"

layout(std430, binding = 0) readonly buffer Partial { float partial[]; };
layout(std430, binding = 1) writeonly buffer Out { float out_[]; };

void main() {
  const uint stride = 2 + p.Dv;
  for (uint row = gl_WorkGroupID.x; row < p.rows; row += gl_NumWorkGroups.x) {
    const uint base = p.partial_first + row * p.n_chunks * stride;
    float M = NEG_INF;
    for (uint c = 0; c < p.n_chunks; ++c) M = max(M, partial[base + c * stride]);
    float L = 0.0;
    for (uint c = 0; c < p.n_chunks; ++c) L += partial[base + c * stride + 1] * exp(partial[base + c * stride] - M);
    const float inv_sum = 1.0 / L;
    for (uint d = gl_LocalInvocationID.x; d < p.Dv; d += WG) {
      float acc = 0.0;
      for (uint c = 0; c < p.n_chunks; ++c) {
        acc += partial[base + c * stride + 2 + d] * exp(partial[base + c * stride] - M);
      }
      out_[p.out_first + row * p.Dv + d] = acc * inv_sum;
    }
  }
}
