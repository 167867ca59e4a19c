// IN_NORM: a product that reads rms_norm(x) with weight g, with no step of its own writing it.
// Each value of x is multiplied by its weight (1 + g when zero_centered) on the way in, its
// square added to the team's sum, and the team's dot product scaled by
// 1 / sqrt(sum of squares / K + eps), rms_norm's factor, at the end. The including shader sets
// NORM_BINDING and has p.g_offset, p.eps, p.zero_centered and p.K (x's row length).
#ifndef MOEFLUX_INPUT_NORM_GLSL
#define MOEFLUX_INPUT_NORM_GLSL

layout(std430, binding = NORM_BINDING) readonly buffer G { NORM_T g[]; };
layout(std430, binding = NORM_BINDING) readonly buffer G4 { NORM4_T g4[]; };

float norm_weight(uint c) {
  const float v = norm_to_float(g[p.g_offset + c]);
  return p.zero_centered != 0u ? 1.0 + v : v;
}

// The weights of columns [c, c + 4), c a multiple of 4: one vec4 load when g's offset is one too.
vec4 norm_weight4(uint c) {
  const vec4 v = (p.g_offset & 3u) == 0u
                     ? norm4_to_vec4(g4[(p.g_offset + c) >> 2])
                     : vec4(norm_to_float(g[p.g_offset + c]), norm_to_float(g[p.g_offset + c + 1u]),
                            norm_to_float(g[p.g_offset + c + 2u]), norm_to_float(g[p.g_offset + c + 3u]));
  return p.zero_centered != 0u ? 1.0 + v : v;
}

// x's values v at columns [c, c + 4) as the product reads them; their squares go into sum_sq.
vec4 norm_in4(vec4 v, uint c, inout float sum_sq) {
  sum_sq += dot(v, v);
  return v * norm_weight4(c);
}

float inv_rms(float sum_sq) { return 1.0 / sqrt(sum_sq / float(p.K) + p.eps); }

#endif
