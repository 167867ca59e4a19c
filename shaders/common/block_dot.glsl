// One block of 8 columns of a quantized row against x (at a multiple of 8). block_x loads x[at,
// at + 8) as two vec4s when x's binding offset is a multiple of 4 (its rows then are: K is a multiple
// of 32), so that a team whose lanes own neighbouring blocks reads whole 32-byte spans; else one
// float at a time: the same values either way. The including shader names x's binding as floats
// (BLOCK_X) and as vec4s (BLOCK_X4), and includes common/dequant.glsl first.
//
// QBlock is a block's weights as loaded: for 4- and 8-bit q its raw words with the group's scale
// and bias, dotted by qblock_dot without dequantizing: each q becomes the float 1 + q / 2^Q_BITS by
// placing its bits in the mantissa of 1.0 (no conversion instruction), and
//   sum_i (s q_i + b) x_i = s 2^Q_BITS (sum_i (1 + q_i / 2^Q_BITS) x_i - sum_i x_i) + b sum_i x_i,
// about half the instructions of dequantizing first; the block's sum of x is shared by every row
// dotted with it. For 3- and 2-bit q, the dequantized values (common/dequant.glsl's dequant8).
#ifndef MOEFLUX_BLOCK_DOT_GLSL
#define MOEFLUX_BLOCK_DOT_GLSL

void block_x(uint at, bool x_aligned, out vec4 lo, out vec4 hi) {
  lo = x_aligned ? BLOCK_X4[at >> 2] : vec4(BLOCK_X[at], BLOCK_X[at + 1u], BLOCK_X[at + 2u], BLOCK_X[at + 3u]);
  hi = x_aligned ? BLOCK_X4[(at >> 2) + 1u]
                 : vec4(BLOCK_X[at + 4u], BLOCK_X[at + 5u], BLOCK_X[at + 6u], BLOCK_X[at + 7u]);
}

float block_sum(vec4 lo, vec4 hi) {
  const vec4 s = lo + hi;
  return (s.x + s.y) + (s.z + s.w);
}

#ifdef Q_BITS
#if Q_BITS == 4 || Q_BITS == 8
struct QBlock {
  uvec2 words;  // the block's q: one word (4-bit) or two (8-bit)
  float scale;  // the group's scale times 2^Q_BITS
  float bias;
};

// Block b (columns [8b, 8b + 8)) of `row`.
QBlock load_qblock(QuantRows r, uint row, uint b) {
  const uint at = r.q_first + row * r.row_words + b * (Q_BITS / 4u), g = dequant_group(r, b * 8u);
  QBlock q;
  q.words = uvec2(q_words[at], Q_BITS == 8 ? q_words[at + 1u] : 0u);
  q.scale = dequant_scale(r, row, g) * float(1u << Q_BITS);
  q.bias = dequant_bias(r, row, g);
  return q;
}

// The four values of word w from bit `first` on (4 or 8 bits apart) as 1 + q / 2^Q_BITS.
vec4 unit_floats(uint w, uint first) {
#if Q_BITS == 4
  const uvec4 v = first == 0u ? uvec4(w << 19, w << 15, w << 11, w << 7) : uvec4(w << 3, w >> 1, w >> 5, w >> 9);
  return uintBitsToFloat((v & 0x00780000u) | 0x3F800000u);
#else
  const uvec4 v = uvec4(w << 15, w << 7, w >> 1, w >> 9);
  return uintBitsToFloat((v & 0x007F8000u) | 0x3F800000u);
#endif
}

// The block's dot product with x (lo, hi: block_x; xs: block_sum of them).
float qblock_dot(QBlock q, vec4 lo, vec4 hi, float xs) {
#if Q_BITS == 4
  const float fx = dot(unit_floats(q.words.x, 0u), lo) + dot(unit_floats(q.words.x, 16u), hi);
#else
  const float fx = dot(unit_floats(q.words.x, 0u), lo) + dot(unit_floats(q.words.y, 0u), hi);
#endif
  return q.scale * (fx - xs) + q.bias * xs;
}
#else
struct QBlock {
  float v[8];
};

QBlock load_qblock(QuantRows r, uint row, uint b) {
  QBlock q;
  dequant8(r, row, b * 8u, q.v);
  return q;
}

float qblock_dot(QBlock q, vec4 lo, vec4 hi, float xs) {
  return dot(vec4(q.v[0], q.v[1], q.v[2], q.v[3]), lo) + dot(vec4(q.v[4], q.v[5], q.v[6], q.v[7]), hi);
}
#endif
#endif  // Q_BITS

#endif
