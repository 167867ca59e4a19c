// x[at, at + 8) . w for one dequant8 block of a quantized row (at a multiple of 8): two vec4 loads
// when x's binding offset is a multiple of 4 (its rows then are: K is a multiple of 32), so that a
// team whose lanes own neighbouring blocks reads whole 32-byte spans; else one float at a time. The
// same arithmetic either way: where x lies never changes the bits. The including shader names x's
// binding as floats (BLOCK_X) and as vec4s (BLOCK_X4).
#ifndef MOEFLUX_BLOCK_DOT_GLSL
#define MOEFLUX_BLOCK_DOT_GLSL

float block_dot(float w[8], uint at, bool x_aligned) {
  const vec4 lo = x_aligned ? BLOCK_X4[at >> 2] : vec4(BLOCK_X[at], BLOCK_X[at + 1u], BLOCK_X[at + 2u], BLOCK_X[at + 3u]);
  const vec4 hi = x_aligned ? BLOCK_X4[(at >> 2) + 1u]
                            : vec4(BLOCK_X[at + 4u], BLOCK_X[at + 5u], BLOCK_X[at + 6u], BLOCK_X[at + 7u]);
  return dot(vec4(w[0], w[1], w[2], w[3]), lo) + dot(vec4(w[4], w[5], w[6], w[7]), hi);
}

#endif
