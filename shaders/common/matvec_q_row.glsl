// One team's share of x[t] . w[row] for t < T (T <= MAX_T) and a quantized row: lanes stride over
// K's dequant8 blocks four at a time (coalesced words, four loads in flight), then one at a time.
// Shared by matmul_vec_q and matmul_vec_q_many, so the two give the same bits for a row. The
// including shader defines MAX_T, TEAM_LANE and TEAM_SIZE, the weight's buffers as
// common/dequant.glsl reads them, and BLOCK_X / BLOCK_X4 (common/block_dot.glsl).
#ifndef MOEFLUX_MATVEC_Q_ROW_GLSL
#define MOEFLUX_MATVEC_Q_ROW_GLSL

void matvec_q_row(QuantRows r, uint row, uint x_offset, uint K, uint T, bool x_aligned, out float acc[MAX_T]) {
  const uint blocks = K / 8;
  [[unroll]] for (uint t = 0; t < MAX_T; ++t) acc[t] = 0.0;
  uint b = TEAM_LANE;
  for (; b + 3 * TEAM_SIZE < blocks; b += 4 * TEAM_SIZE) {
    float w[4][8];
    dequant8x4(r, row, b, TEAM_SIZE, w);
    [[unroll]] for (uint t = 0; t < MAX_T; ++t) {
      if (t >= T) break;
      float s = 0.0;
      [[unroll]] for (uint j = 0; j < 4; ++j) s += block_dot(w[j], x_offset + t * K + (b + j * TEAM_SIZE) * 8, x_aligned);
      acc[t] += s;
    }
  }
  for (; b < blocks; b += TEAM_SIZE) {
    float w[8];
    dequant8(r, row, b * 8, w);
    [[unroll]] for (uint t = 0; t < MAX_T; ++t) {
      if (t >= T) break;
      acc[t] += block_dot(w, x_offset + t * K + b * 8, x_aligned);
    }
  }
}

#endif
