#version 450
// delta_rule_gates: g = -exp(a_log) * softplus(a + dt_bias) with torch's threshold (softplus(x) = x
// above 20), beta = sigmoid(b). Bindings: 0 a f32 [T, HV], 1 b f32 [T, HV], 2 a_log WEIGHT_T [HV],
// 3 dt_bias WEIGHT_T [HV], 4 g f32 [T, HV], 5 beta f32 [T, HV]. Defines: W_F32 | W_F16 | W_BF16.
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/delta_rule_gates.h"

layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) readonly buffer ALog { WEIGHT_T a_log[]; };
layout(std430, binding = 3) readonly buffer DtBias { WEIGHT_T dt_bias[]; };
layout(std430, binding = 4) writeonly buffer G { float g[]; };
layout(std430, binding = 5) writeonly buffer Beta { float beta[]; };

// log(1 + u) accurate for small u (GLSL has no log1p): the rounding of 1 + u divided back out.
float log1p_(float u) {
  const float v = 1.0 + u;
  return v == 1.0 ? u : log(v) * (u / (v - 1.0));
}

void main() {
  const uint n = p.T * p.HV;
  for (uint i = global_index(); i < n; i += global_stride()) {
    const uint h = i % p.HV;
    const float x = a[p.a_offset + i] + weight_to_float(dt_bias[p.dt_bias_offset + h]);
    const float softplus = x > 20.0 ? x : log1p_(exp(x));
    g[p.g_offset + i] = -exp(weight_to_float(a_log[p.a_log_offset + h])) * softplus;
    beta[p.beta_offset + i] = 1.0 / (1.0 + exp(-b[p.b_offset + i]));
  }
}
