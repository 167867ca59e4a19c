#version 450
// rope: NeoX rotate-half over the first 2 * half_dim channels of each head, in place, with cos and
// sin computed on the host (GLSL sin/cos are only accurate on [-pi, pi]): one invocation per pair.
// Bindings: 0 cs f32 [2, T, half_dim] (cos, then sin), 1 x f32 [T, heads, D].
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/rope.h"

layout(std430, binding = 0) readonly buffer CosSin { float cs[]; };
layout(std430, binding = 1) buffer X { float x[]; };

void main() {
  const uint half_dim = p.half_dim;
  const uint n = p.T * p.heads * half_dim;
  for (uint i = global_index(); i < n; i += global_stride()) {
    const uint j = i % half_dim, head_row = i / half_dim, t = head_row / p.heads;
    const uint at = p.x_offset + head_row * p.D + j;
    const float c = cs[p.cs_offset + t * half_dim + j];
    const float s = cs[p.cs_offset + (p.T + t) * half_dim + j];
    const float a = x[at], b = x[at + half_dim];
    x[at] = a * c - b * s;
    x[at + half_dim] = b * c + a * s;
  }
}
