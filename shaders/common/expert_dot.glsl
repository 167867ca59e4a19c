// Dot products of expert weight rows with an input vector, the weights read by device address
// (common/types.glsl's USE_BUFFER_REFERENCE), by a team of lanes: a subgroup with USE_SUBGROUP
// (several rows per workgroup, no barriers), else the workgroup (shared-memory sums, REDUCE_N
// values). The including shader binds `vin` (float) and `vin4` (the same binding as vec4) and has
// MoePairParams `p`.
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

#define BLOCK_X vin
#define BLOCK_X4 vin4
#include "common/block_dot.glsl"

// Lane `lane` of a team of `team` lanes: its share of w[row] . vin[base, base + K). Quantized, the
// lanes stride over K's blocks of 8 (common/block_dot.glsl), four in flight, K then being a multiple of 32; float, four
// values at a time, then the tail one at a time.
float lane_dot_at(uint row, uint base, uint lane, uint team) {
  const uint K = p.K;
  float acc = 0.0;
#ifdef Q_BITS
  const QuantRows r = QuantRows(0, p.s_first, p.b_first, p.row_words, p.groups, p.group_size, p.scale_bf16);
  const bool x_aligned = (base & 3u) == 0u;
  uint b = lane;
  for (; b + 3 * team < K / 8; b += 4 * team) {
    QBlock w[4];
    [[unroll]] for (uint j = 0; j < 4; ++j) w[j] = load_qblock(r, row, b + j * team);
    [[unroll]] for (uint j = 0; j < 4; ++j) {
      vec4 lo, hi;
      block_x(base + (b + j * team) * 8, x_aligned, lo, hi);
      acc += qblock_dot(w[j], lo, hi, block_sum(lo, hi));
    }
  }
  // The last blocks (at most three a lane) loaded together, the lanes past the end reading the last
  // block again (no branch between the loads), then added one at a time.
  if (b < K / 8) {
    QBlock w[3];
    [[unroll]] for (uint j = 0; j < 3; ++j) w[j] = load_qblock(r, row, min(b + j * team, K / 8 - 1));
    [[unroll]] for (uint j = 0; j < 3; ++j) {
      if (b + j * team >= K / 8) break;
      vec4 lo, hi;
      block_x(base + (b + j * team) * 8, x_aligned, lo, hi);
      acc += qblock_dot(w[j], lo, hi, block_sum(lo, hi));
    }
  }
#else
  // Four independent loads per step, then the tail one at a time.
  const uint wide = K - K % (4 * team), w0 = row * K;
  for (uint c = 4 * lane; c < wide; c += 4 * team) {
    const float a0 = weight_to_float(w_values.v[w0 + c]), a1 = weight_to_float(w_values.v[w0 + c + 1]);
    const float a2 = weight_to_float(w_values.v[w0 + c + 2]), a3 = weight_to_float(w_values.v[w0 + c + 3]);
    acc += a0 * vin[base + c] + a1 * vin[base + c + 1] + a2 * vin[base + c + 2] + a3 * vin[base + c + 3];
  }
  for (uint c = wide + lane; c < K; c += team) acc += weight_to_float(w_values.v[w0 + c]) * vin[base + c];
#endif
  return acc;
}

float lane_dot(uint row, uint base) { return lane_dot_at(row, base, TEAM_LANE, TEAM_SIZE); }

#ifdef Q_BITS
// The shares of gate[row] . x and up[row] . x (.xy) and of row + 1's (.zw) at once: the four
// rows' loads in flight together, each block of x read once for the four. A row past the end
// reads the last row again.
vec4 lane_dot_pairs(uvec2 gate, uvec2 up, uint row, uint base) {
  const uint K = p.K, team = TEAM_SIZE, row1 = min(row + 1, p.N - 1);
  const QuantRows r = QuantRows(0, p.s_first, p.b_first, p.row_words, p.groups, p.group_size, p.scale_bf16);
  const bool x_aligned = (base & 3u) == 0u;
  vec4 acc = vec4(0.0);
  uint b = TEAM_LANE;
  for (; b + 3 * team < K / 8; b += 4 * team) {
    QBlock g[4], u[4], g1[4], u1[4];
    use_block(gate);
    [[unroll]] for (uint j = 0; j < 4; ++j) {
      g[j] = load_qblock(r, row, b + j * team);
      g1[j] = load_qblock(r, row1, b + j * team);
    }
    use_block(up);
    [[unroll]] for (uint j = 0; j < 4; ++j) {
      u[j] = load_qblock(r, row, b + j * team);
      u1[j] = load_qblock(r, row1, b + j * team);
    }
    [[unroll]] for (uint j = 0; j < 4; ++j) {
      vec4 lo, hi;
      block_x(base + (b + j * team) * 8, x_aligned, lo, hi);
      const float xs = block_sum(lo, hi);
      acc += vec4(qblock_dot(g[j], lo, hi, xs), qblock_dot(u[j], lo, hi, xs), qblock_dot(g1[j], lo, hi, xs),
                  qblock_dot(u1[j], lo, hi, xs));
    }
  }
  for (; b < K / 8; b += team) {
    use_block(gate);
    const QBlock g = load_qblock(r, row, b), g1 = load_qblock(r, row1, b);
    use_block(up);
    const QBlock u = load_qblock(r, row, b), u1 = load_qblock(r, row1, b);
    vec4 lo, hi;
    block_x(base + b * 8, x_aligned, lo, hi);
    const float xs = block_sum(lo, hi);
    acc += vec4(qblock_dot(g, lo, hi, xs), qblock_dot(u, lo, hi, xs), qblock_dot(g1, lo, hi, xs),
                qblock_dot(u1, lo, hi, xs));
  }
  return acc;
}
#endif

#endif
