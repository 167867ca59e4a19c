// Dot products of expert weight rows with an input vector, the weights read by device address
// (common/types.glsl's USE_BUFFER_REFERENCE), by a team of lanes: a subgroup with USE_SUBGROUP
// (several rows per workgroup, no barriers), else the workgroup (shared-memory sums, REDUCE_N
// values). The including shader binds `vin` (float) and has MoePairParams `p`.
// Defines: Q_BITS (8, 4, 3, 2) or one of W_F32, W_F16, W_BF16.
#ifndef MOEFLUX_EXPERT_DOT_GLSL
#define MOEFLUX_EXPERT_DOT_GLSL

#ifdef USE_SUBGROUP
#define TEAM_ID gl_SubgroupID
#define TEAM_COUNT gl_NumSubgroups
#define TEAM_LANE gl_SubgroupInvocationID
#define TEAM_SIZE gl_SubgroupSize
#else
#define TEAM_ID 0
#define TEAM_COUNT 1
#define TEAM_LANE gl_LocalInvocationID.x
#define TEAM_SIZE WG
#endif

#ifdef Q_BITS
layout(buffer_reference, std430, buffer_reference_align = 4) readonly buffer WordRef { uint v[]; };
WordRef w_words;  // the block being read: packed q, then scales, then biases (format/quant.h)
#define q_words w_words.v
#define s_words w_words.v
#define b_words w_words.v
#include "common/dequant.glsl"
#else
layout(buffer_reference, std430, buffer_reference_align = 4) readonly buffer WeightRef { WEIGHT_T v[]; };
WeightRef w_values;
#endif

// The block at `address` (low, high words) is the one lane_dot reads.
void use_block(uvec2 address) {
#ifdef Q_BITS
  w_words = WordRef(address);
#else
  w_values = WeightRef(address);
#endif
}

// This lane's share of w[row] . vin[base, base + K): lanes stride over K (dequant8 blocks, four in
// flight, when quantized, K then being a multiple of 32; four values at a time when float).
float lane_dot(uint row, uint base) {
  const uint K = p.K;
  float acc = 0.0;
#ifdef Q_BITS
  const QuantRows r = QuantRows(0, p.s_first, p.b_first, p.row_words, p.groups, p.group_size, p.scale_bf16);
  uint b = TEAM_LANE;
  for (; b + 3 * TEAM_SIZE < K / 8; b += 4 * TEAM_SIZE) {
    float w[4][8];
    dequant8x4(r, row, b, TEAM_SIZE, w);
    for (uint j = 0; j < 4; ++j) {
      const uint xi = base + (b + j * TEAM_SIZE) * 8;
      for (uint i = 0; i < 8; ++i) acc += w[j][i] * vin[xi + i];
    }
  }
  for (; b < K / 8; b += TEAM_SIZE) {
    float w[8];
    dequant8(r, row, b * 8, w);
    float s = 0.0;
    for (uint i = 0; i < 8; ++i) s += w[i] * vin[base + b * 8 + i];
    acc += s;
  }
#else
  // Four independent loads per step, then the tail one at a time.
  const uint wide = K - K % (4 * TEAM_SIZE), w0 = row * K;
  for (uint c = 4 * TEAM_LANE; c < wide; c += 4 * TEAM_SIZE) {
    const float a0 = weight_to_float(w_values.v[w0 + c]), a1 = weight_to_float(w_values.v[w0 + c + 1]);
    const float a2 = weight_to_float(w_values.v[w0 + c + 2]), a3 = weight_to_float(w_values.v[w0 + c + 3]);
    acc += a0 * vin[base + c] + a1 * vin[base + c + 1] + a2 * vin[base + c + 2] + a3 * vin[base + c + 3];
  }
  for (uint c = wide + TEAM_LANE; c < K; c += TEAM_SIZE) acc += weight_to_float(w_values.v[w0 + c]) * vin[base + c];
#endif
  return acc;
}

#endif
