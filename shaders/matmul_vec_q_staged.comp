#version 450
// matmul_vec_q_staged: y = x w^T for T rows of x (decode), w quantized, x small enough to stage in
// shared memory (T * K <= X_FLOATS). Weight streaming wants wide loads and many bytes in flight:
// lane l of a subgroup reads whole blocks of 32 columns (Q_BITS words, as vectors where aligned),
// blocks l, l + S, ...; the subgroup takes team_rows (<= MAX_ROWS) rows at once, so their loads are
// in flight together and each x value read serves them all. x comes from shared memory, padded by
// one vec4 per block so the eight vec4 reads of a block by eight lanes fall in distinct banks.
// A block adds scale * (q . x) + bias * sum(x), the group's affine terms factored out as the CPU
// kernels factor them.
// Bindings: 0 x f32 [T, K] (also read as vec4), 1 q_words (also as uvec4/uvec2), 2 s_words,
// 3 b_words, 4 y f32 [T, ldy]. Defines: Q_BITS (8, 4, 3, 2). Needs subgroup arithmetic.
#define USE_SUBGROUP
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/matmul_q.h"
#define MAX_T 8
#define MAX_ROWS 4
#define X_FLOATS 6144                 // T * K staged at most (the host checks): 27 KiB with padding
#define X_VEC4 (X_FLOATS / 32 * 9)    // 8 vec4 of a block + 1 of padding

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 0) readonly buffer X4 { vec4 x4[]; };
layout(std430, binding = 1) readonly buffer QW { uint q_words[]; };
layout(std430, binding = 1) readonly buffer QW4 { uvec4 q_words4[]; };
layout(std430, binding = 1) readonly buffer QW2 { uvec2 q_words2[]; };
layout(std430, binding = 2) readonly buffer SW { uint s_words[]; };
layout(std430, binding = 3) readonly buffer BW { uint b_words[]; };
layout(std430, binding = 4) writeonly buffer Y { float y[]; };

#include "common/quant_quads.glsl"

shared vec4 xs[X_VEC4];

// The Q_BITS words of a block starting at word `at`, as vectors when `aligned` (at a multiple of
// the vector's words).
void load_block(uint at, bool aligned, out uint w[Q_BITS]) {
#if Q_BITS == 8
  if (aligned) {
    const uvec4 a = q_words4[at >> 2], b = q_words4[(at >> 2) + 1u];
    w = uint[8](a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w);
    return;
  }
#elif Q_BITS == 4
  if (aligned) {
    const uvec4 a = q_words4[at >> 2];
    w = uint[4](a.x, a.y, a.z, a.w);
    return;
  }
#elif Q_BITS == 2
  if (aligned) {
    const uvec2 a = q_words2[at >> 1];
    w = uint[2](a.x, a.y);
    return;
  }
#endif
  [[unroll]] for (uint i = 0; i < Q_BITS; ++i) w[i] = q_words[at + i];
}

void main() {
  const uint K = p.K, blocks = K / 32u, lane = gl_SubgroupInvocationID, S = gl_SubgroupSize;
  // Stage x: element e of row t at vec4 t * blocks * 9 + (e / 32) * 9 + (e % 32) / 4.
  const bool x_aligned = (p.x_offset & 3u) == 0u;
  for (uint i = gl_LocalInvocationID.x; i < p.T * K / 4u; i += WG) {
    const uint t = i / (K / 4u), e4 = i % (K / 4u), at = p.x_offset + 4u * i;
    xs[t * blocks * 9u + (e4 >> 3) * 9u + (e4 & 7u)] =
        x_aligned ? x4[at >> 2] : vec4(x[at], x[at + 1u], x[at + 2u], x[at + 3u]);
  }
  barrier();
  const uint vec_words = Q_BITS == 8 || Q_BITS == 4 ? 4u : Q_BITS == 2 ? 2u : 1u;
  const bool q_aligned = (p.q_first % vec_words) == 0u && (p.row_words % vec_words) == 0u;
  const uint rows = p.team_rows;
  for (uint row0 = (gl_WorkGroupID.x * gl_NumSubgroups + gl_SubgroupID) * rows; row0 < p.N;
       row0 += gl_NumWorkGroups.x * gl_NumSubgroups * rows) {
    float acc[MAX_ROWS][MAX_T];
    [[unroll]] for (uint r = 0; r < MAX_ROWS; ++r) {
      for (uint t = 0; t < MAX_T; ++t) acc[r][t] = 0.0;
    }
    for (uint b = lane; b < blocks; b += S) {
      // Every weight load of the step first (rows past N read the last row and are not stored).
      uint w[MAX_ROWS][Q_BITS];
      float scale[MAX_ROWS], bias[MAX_ROWS];
      [[unroll]] for (uint r = 0; r < MAX_ROWS; ++r) {
        if (r >= rows) break;
        const uint row = min(row0 + r, p.N - 1u);
        load_block(p.q_first + row * p.row_words + b * Q_BITS, q_aligned, w[r]);
        const uint g = row * p.groups + b * 32u / p.group_size;
        scale[r] = quad_half(s_words[(p.s_first + g) >> 1], p.s_first + g, p.scale_bf16);
        bias[r] = quad_half(b_words[(p.b_first + g) >> 1], p.b_first + g, p.scale_bf16);
      }
      [[unroll]] for (uint t = 0; t < MAX_T; ++t) {
        if (t >= p.T) break;
        const uint xb = t * blocks * 9u + b * 9u;
        vec4 xv[8];
        [[unroll]] for (uint j = 0; j < 8u; ++j) xv[j] = xs[xb + j];
        const vec4 xs4 = ((xv[0] + xv[1]) + (xv[2] + xv[3])) + ((xv[4] + xv[5]) + (xv[6] + xv[7]));
        const float xsum = (xs4.x + xs4.y) + (xs4.z + xs4.w);
        [[unroll]] for (uint r = 0; r < MAX_ROWS; ++r) {
          if (r >= rows) break;
          float dq = 0.0;
          [[unroll]] for (uint j = 0; j < 8u; ++j) {
            const uint bit = j * 4u * Q_BITS, word = bit >> 5, shift = bit & 31u;
            const uint hi = shift + 4u * Q_BITS > 32u ? w[r][min(word + 1u, Q_BITS - 1u)] : 0u;
            dq += dot(quad_values(w[r][word], hi, shift), xv[j]);
          }
          acc[r][t] += scale[r] * dq + bias[r] * xsum;
        }
      }
    }
    [[unroll]] for (uint r = 0; r < MAX_ROWS; ++r) {
      if (r >= rows) break;
      [[unroll]] for (uint t = 0; t < MAX_T; ++t) {
        if (t >= p.T) break;
        const float total = subgroupAdd(acc[r][t]);  // constant indices keep acc in registers
        if (lane == 0u && row0 + r < p.N) y[p.y_offset + t * p.ldy + row0 + r] = total;
      }
    }
  }
}
