#version 450
// attention_inputs: one workgroup per head row. q rows: rms-normalised with q_norm (as rms_norm),
// then rotated (as rope), in place; k rows: the same with k_norm, written into the k cache; v rows:
// copied into the v cache. Bindings: 0 cs f32 [2, T, half] (cos, then sin), 1 q_norm WEIGHT_T [D],
// 2 k_norm WEIGHT_T [D], 3 k f32, 4 v f32, 5 q f32 (read and written), 6 k cache f32, 7 v cache f32.
// Defines: W_F32 | W_F16 | W_BF16; USE_SUBGROUP.
#include "common/types.glsl"
#include "common/grid.glsl"
#define REDUCE_N 1
#include "common/reduce.glsl"
#include "params/attention_inputs.h"

layout(std430, binding = 0) readonly buffer CosSin { float cs[]; };
layout(std430, binding = 1) readonly buffer QNorm { WEIGHT_T qn[]; };
layout(std430, binding = 2) readonly buffer KNorm { WEIGHT_T kn[]; };
layout(std430, binding = 3) readonly buffer K { float k[]; };
layout(std430, binding = 4) readonly buffer V { float v[]; };
layout(std430, binding = 5) buffer Q { float q[]; };
layout(std430, binding = 6) writeonly buffer KCache { float kc[]; };
layout(std430, binding = 7) writeonly buffer VCache { float vc[]; };

float source(bool is_q, uint at) { return is_q ? q[p.q_offset + at] : k[p.k_offset + at]; }
void store(bool is_q, uint at, float value) {
  if (is_q) q[p.q_offset + at] = value;
  else kc[p.kc_offset + at] = value;
}
float norm_weight(bool is_q, uint c) {
  if (p.norm == 0) return 1.0;
  const float w = is_q ? weight_to_float(qn[p.qn_offset + c]) : weight_to_float(kn[p.kn_offset + c]);
  return p.norm == 2 ? 1.0 + w : w;
}

void main() {
  const uint tid = gl_LocalInvocationID.x, D = p.D, half_dim = p.half_dim;
  const uint rows_q = p.T * p.nh, rows_k = p.T * p.nkv;
  for (uint r = gl_WorkGroupID.x; r < rows_q + 2 * rows_k; r += gl_NumWorkGroups.x) {
    if (r >= rows_q + rows_k) {  // a v row: copied
      const uint vr = r - rows_q - rows_k;
      for (uint c = tid; c < p.Dv; c += WG) vc[p.vc_offset + vr * p.Dv + c] = v[p.v_offset + vr * p.Dv + c];
      continue;
    }
    const bool is_q = r < rows_q;
    const uint hr = is_q ? r : r - rows_q, t = hr / (is_q ? p.nh : p.nkv), row = hr * D;
    float inv_rms = 1.0;
    if (p.norm != 0) {
      float sum[REDUCE_N];
      sum[0] = 0.0;
      for (uint c = tid; c < D; c += WG) {
        const float x = source(is_q, row + c);
        sum[0] += x * x;
      }
      workgroup_sums(sum);  // ends with a barrier: every read above is done before the writes below
      inv_rms = 1.0 / sqrt(reduce_total[0] / float(D) + p.eps);
    }
    for (uint j = tid; j < half_dim; j += WG) {
      const float a = (source(is_q, row + j) * inv_rms) * norm_weight(is_q, j);
      const float b = (source(is_q, row + j + half_dim) * inv_rms) * norm_weight(is_q, j + half_dim);
      const float c = cs[p.cs_offset + t * half_dim + j], s = cs[p.cs_offset + (p.T + t) * half_dim + j];
      store(is_q, row + j, a * c - b * s);
      store(is_q, row + j + half_dim, b * c + a * s);
    }
    for (uint c = 2 * half_dim + tid; c < D; c += WG) store(is_q, row + c, (source(is_q, row + c) * inv_rms) * norm_weight(is_q, c));
  }
}
