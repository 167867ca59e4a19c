// Affine group dequantization (format/quant.h) for every quantized kernel: w = q * scale + bias per
// group of a row, q of Q_BITS (8/4/3/2) bits in the row's little-endian bit stream (MLX's order).
// The including shader binds the weight's sections as uint buffers q_words (packed q rows),
// s_words and b_words (16-bit scales and biases [rows, groups]).
#ifndef MOEFLUX_DEQUANT_GLSL
#define MOEFLUX_DEQUANT_GLSL

// Where row 0 of the bound rows starts in each buffer, and the row geometry.
struct QuantRows {
  uint q_first;     // word index in q_words
  uint s_first;     // 16-bit index in s_words
  uint b_first;     // 16-bit index in b_words
  uint row_words;   // cols * Q_BITS / 32 (a row is always whole words: cols is a multiple of 32)
  uint groups;      // groups per row
  uint group_size;  // 32, 64 or 128
  uint scale_bf16;  // 1: scales and biases are bf16; 0: f16
};

float dequant_half(uint word, uint index, uint bf16) {
  const uint h = (word >> (16 * (index & 1u))) & 0xFFFFu;
  return bf16 != 0 ? uintBitsToFloat(h << 16) : unpackHalf2x16(h).x;
}

float dequant_scale(QuantRows r, uint row, uint group) {
  const uint i = r.s_first + row * r.groups + group;
  return dequant_half(s_words[i >> 1], i, r.scale_bf16);
}

float dequant_bias(QuantRows r, uint row, uint group) {
  const uint i = r.b_first + row * r.groups + group;
  return dequant_half(b_words[i >> 1], i, r.scale_bf16);
}

// The q value of element `col` of `row`; reads a second word only when the value straddles two.
uint dequant_q(QuantRows r, uint row, uint col) {
  const uint bit = col * Q_BITS, at = r.q_first + row * r.row_words + (bit >> 5), shift = bit & 31u;
  uint v = q_words[at] >> shift;
  if (shift + Q_BITS > 32) v |= q_words[at + 1] << (32 - shift);
  return v & ((1u << Q_BITS) - 1u);
}

// q * scale, then + bias, each rounded as format's dequantizer rounds them (no fused multiply-add).
float dequant_apply(uint q, float scale, float bias) {
  precise float scaled = q_float(q) * scale;
  precise float value = scaled + bias;
  return value;
}

// The group of column `col` (group sizes are powers of two).
uint dequant_group(QuantRows r, uint col) { return col >> findLSB(r.group_size); }

float dequant(QuantRows r, uint row, uint col) {
  const uint g = dequant_group(r, col);
  return dequant_apply(dequant_q(r, row, col), dequant_scale(r, row, g), dequant_bias(r, row, g));
}

// Elements [col, col + 8) of a row, col a multiple of 8 (so all in one group): one word for q4,
// two for q8, the bit stream for q3 and q2.
void dequant8(QuantRows r, uint row, uint col, out float v[8]) {
  const uint g = dequant_group(r, col);
  const float s = dequant_scale(r, row, g), b = dequant_bias(r, row, g);
  const uint base = r.q_first + row * r.row_words;
#if Q_BITS == 4
  const uint word = q_words[base + col / 8];
  [[unroll]] for (uint i = 0; i < 8; ++i) v[i] = dequant_apply((word >> (4 * i)) & 0xFu, s, b);
#elif Q_BITS == 8
  const uint lo = q_words[base + col / 4], hi = q_words[base + col / 4 + 1];
  [[unroll]] for (uint i = 0; i < 4; ++i) {
    v[i] = dequant_apply((lo >> (8 * i)) & 0xFFu, s, b);
    v[i + 4] = dequant_apply((hi >> (8 * i)) & 0xFFu, s, b);
  }
#else
  [[unroll]] for (uint i = 0; i < 8; ++i) v[i] = dequant_apply(dequant_q(r, row, col + i), s, b);
#endif
}

#endif
