#version 450
// causal_conv1d: one invocation per channel walks the T rows with the last K inputs in registers,
// so out may alias x (each element is read before it is overwritten, by the same invocation).
// Bindings: 0 x f32 [T, C], 1 w WEIGHT_T [C, K], 2 state f32 [K-1, C] (read and written),
// 3 out f32 [T, C]. Defines: W_F32 | W_F16 | W_BF16. K <= MAX_K (the host checks).
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/causal_conv1d.h"

#define MAX_K 16

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer W { WEIGHT_T w[]; };
layout(std430, binding = 2) buffer State { float state[]; };
layout(std430, binding = 3) writeonly buffer Out { float out_[]; };

void main() {
  const uint C = p.C, K = p.K;
  for (uint c = global_index(); c < C; c += global_stride()) {
    float win[MAX_K];  // oldest first; win[K-1] is the current input
    for (uint i = 0; i + 1 < K; ++i) win[i] = state[p.state_offset + i * C + c];
    for (uint t = 0; t < p.T; ++t) {
      win[K - 1] = x[p.x_offset + t * C + c];
      float acc = 0.0;
      for (uint i = 0; i < K; ++i) acc += weight_to_float(w[p.w_offset + c * K + i]) * win[i];
      out_[p.out_offset + t * C + c] = acc / (1.0 + exp(-acc));
      for (uint i = 0; i + 1 < K; ++i) win[i] = win[i + 1];
    }
    for (uint i = 0; i + 1 < K; ++i) state[p.state_offset + i * C + c] = win[i];
  }
}
