// Chunks of a quantized row (format/quant.h) read 16 bytes at a time: chunk c is uvec4 number c of
// the row's packed q, CHUNK_VALUES = 128 / Q_BITS values (Q_BITS 8 or 4), always inside one group
// (the host picks these kernels only where group_size is a multiple of CHUNK_VALUES). A chunk's dot
// product with x is scale * (q . x) + bias * sum(x), the group's affine terms factored out as the
// CPU kernels factor them. The including shader binds x as `vin` (float) and `vin4` (vec4), declares
// the buffer reference type WordRef { uint v[]; } and has MoePairParams `p`.
#ifndef MOEFLUX_QUANT_CHUNK_GLSL
#define MOEFLUX_QUANT_CHUNK_GLSL

#define CHUNK_VALUES (128 / Q_BITS)

WordRef w_words;  // dequant.glsl's sections: only its dequant_half is used here
#define q_words w_words.v
#define s_words w_words.v
#define b_words w_words.v
#include "common/dequant.glsl"

// (scale, bias) of chunk c of `row` in the block at w.
vec2 chunk_affine(WordRef w, uint row, uint c) {
  const uint g = c * CHUNK_VALUES / p.group_size;
  const uint si = p.s_first + row * p.groups + g, bi = p.b_first + row * p.groups + g;
  return vec2(dequant_half(w.v[si >> 1], si, p.scale_bf16), dequant_half(w.v[bi >> 1], bi, p.scale_bf16));
}

// Values [4m, 4m + 4) of a chunk as floats (exact: the float with the bits of 2^23 + q, minus 2^23).
vec4 chunk_quad(uvec4 q, uint m) {
#if Q_BITS == 4
  const uint v = q[m >> 1] >> (16u * (m & 1u));
  const uvec4 n = uvec4(v, v >> 4, v >> 8, v >> 12) & 0xFu;
#else
  const uint v = q[m];
  const uvec4 n = uvec4(v, v >> 8, v >> 16, v >> 24) & 0xFFu;
#endif
  return uintBitsToFloat(n | 0x4B000000u) - 8388608.0;
}

// x[at + 4m, at + 4m + 4): one vec4 load when x's offset is a multiple of 4, else four floats.
vec4 chunk_x(uint at, uint m, bool x_aligned) {
  const uint i = at + 4u * m;
  return x_aligned ? vin4[i >> 2] : vec4(vin[i], vin[i + 1u], vin[i + 2u], vin[i + 3u]);
}

// Chunk a (q, affine) and chunk b with x[at, at + CHUNK_VALUES): the two dot products, x read once.
vec2 chunk_dot_pair(uvec4 qa, vec2 fa, uvec4 qb, vec2 fb, uint at, bool x_aligned) {
  float da = 0.0, db = 0.0;
  vec4 sum4 = vec4(0.0);
  [[unroll]] for (uint m = 0; m < CHUNK_VALUES / 4; ++m) {
    const vec4 xv = chunk_x(at, m, x_aligned);
    da += dot(chunk_quad(qa, m), xv);
    db += dot(chunk_quad(qb, m), xv);
    sum4 += xv;
  }
  const float xs = (sum4.x + sum4.y) + (sum4.z + sum4.w);
  return vec2(fa.x * da + fa.y * xs, fb.x * db + fb.y * xs);
}

float chunk_dot(uvec4 q, vec2 f, uint at, bool x_aligned) {
  float d = 0.0;
  vec4 sum4 = vec4(0.0);
  [[unroll]] for (uint m = 0; m < CHUNK_VALUES / 4; ++m) {
    const vec4 xv = chunk_x(at, m, x_aligned);
    d += dot(chunk_quad(q, m), xv);
    sum4 += xv;
  }
  return f.x * d + f.y * ((sum4.x + sum4.y) + (sum4.z + sum4.w));
}

#endif
