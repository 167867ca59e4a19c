// Quads of a quantized row (format/quant.h): columns [c, c + 4) for c a multiple of 4, four
// consecutive values of the row's little-endian bit stream, always inside one group (group sizes
// are multiples of 32). The decode kernels read rows quad by quad, lane l of a team of S taking
// quads l, l + S, l + 2S, ...: every load instruction of the team then covers one contiguous span
// of q words and of x (a vec4 per lane), where a lane owning whole blocks of 8 columns would touch
// eight cache lines per x load.
#ifndef MOEFLUX_QUANT_QUADS_GLSL
#define MOEFLUX_QUANT_QUADS_GLSL

// The word of the row holding quad `quad`'s first bit, and the bit inside that word.
uint quad_word(uint quad) { return (quad * 4u * Q_BITS) >> 5; }
uint quad_shift(uint quad) { return (quad * 4u * Q_BITS) & 31u; }
// Whether the quad's bits run into the next word (3-bit values only).
bool quad_straddles(uint quad) { return quad_shift(quad) + 4u * Q_BITS > 32u; }

// The quad's q values as floats, from its first word (and the next when it straddles).
vec4 quad_values(uint lo, uint hi, uint shift) {
  uint v = lo >> shift;
  if (shift + 4u * Q_BITS > 32u) v |= hi << (32u - shift);
  const uvec4 q = uvec4(v, v >> Q_BITS, v >> (2u * Q_BITS), v >> (3u * Q_BITS)) & ((1u << Q_BITS) - 1u);
  return q_float(q);
}

#endif
