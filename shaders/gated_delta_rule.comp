#version 450
// gated_delta_rule, the per-token recurrence: one workgroup per value head, one invocation per
// state column j (S [dk, dv] row-major), which it decays, reads, updates and multiplies by q in the
// order of the CPU loops; q and k are l2-normalised once per token in shared memory.
// Bindings: 0 q f32 [T, HK, dk], 1 k f32 [T, HK, dk], 2 v f32 [T, HV, dv], 3 g f32 [T, HV],
// 4 beta f32 [T, HV], 5 state f32 [n_heads, dk, dv] (heads from head_first; read and written),
// 6 out f32 [T, HV, dv].
// Defines: USE_SUBGROUP. dk <= MAX_DK (the host checks).
#include "common/types.glsl"
#include "common/grid.glsl"
#define REDUCE_N 2
#include "common/reduce.glsl"
#include "params/gated_delta_rule.h"

#define MAX_DK 256

layout(std430, binding = 0) readonly buffer Q { float q[]; };
layout(std430, binding = 1) readonly buffer K { float k[]; };
layout(std430, binding = 2) readonly buffer V { float v[]; };
layout(std430, binding = 3) readonly buffer G { float g[]; };
layout(std430, binding = 4) readonly buffer Beta { float beta[]; };
layout(std430, binding = 5) buffer State { float S[]; };
layout(std430, binding = 6) writeonly buffer Out { float out_[]; };

shared float qn[MAX_DK];
shared float kn[MAX_DK];

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint dk = p.dk, dv = p.dv, r = p.HV / p.HK;
  for (uint hh = gl_WorkGroupID.x; hh < p.n_heads; hh += gl_NumWorkGroups.x) {
    const uint h = p.head_first + hh, kh = h / r, s0 = p.state_offset + hh * dk * dv;
    for (uint t = 0; t < p.T; ++t) {
      const uint qk = (t * p.HK + kh) * dk;
      float sums[REDUCE_N];
      sums[0] = 0.0;
      sums[1] = 0.0;
      for (uint i = tid; i < dk; i += WG) {
        const float qi = q[p.q_offset + qk + i], ki = k[p.k_offset + qk + i];
        qn[i] = qi;
        kn[i] = ki;
        sums[0] += qi * qi;
        sums[1] += ki * ki;
      }
      workgroup_sums(sums);  // ends with a barrier: qn, kn and the totals are visible
      const float rq = 1.0 / sqrt(reduce_total[0] + 1e-6), rk = 1.0 / sqrt(reduce_total[1] + 1e-6);
      const float decay = exp(g[p.g_offset + t * p.HV + h]), b = beta[p.beta_offset + t * p.HV + h];
      const uint vt = (t * p.HV + h) * dv;
      for (uint j = tid; j < dv; j += WG) {
        float u = 0.0;
        for (uint i = 0; i < dk; ++i) {
          const float s = S[s0 + i * dv + j] * decay;
          S[s0 + i * dv + j] = s;
          u += s * (kn[i] * rk);
        }
        u = (v[p.v_offset + vt + j] - u) * b;
        float o = 0.0;
        for (uint i = 0; i < dk; ++i) {
          const float s = S[s0 + i * dv + j] + (kn[i] * rk) * u;
          S[s0 + i * dv + j] = s;
          o += s * ((qn[i] * rq) * p.scale);
        }
        out_[p.out_offset + vt + j] = o;
      }
      barrier();  // qn, kn and reduce_total are rewritten for the next token
    }
  }
}
