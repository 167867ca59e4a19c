// The rows of rms_norm. The including shader binds x, w and out. One workgroup per row, rows in a
// grid-stride loop. Invocation tid owns the row's elements tid + i * WG and sums their squares in
// ascending i; the workgroup adds those sums (subgroup sums, then the subgroups' in order, or the
// shared-memory tree). Rows of at most ROW_VALUES * WG elements stay in registers: every load
// (x, w) is issued before the first is used, so the row costs one memory round trip and one
// barrier (USE_SUBGROUP); longer rows loop, reading x again for the output. Both paths add in the
// same order, so they give the same bits.
#ifndef MOEFLUX_RMS_NORM_ROWS_GLSL
#define MOEFLUX_RMS_NORM_ROWS_GLSL

#define ROW_VALUES 16  // per invocation: 4096-element rows at WG = 256

// The workgroup's sum of v, in every invocation. Call from uniform control flow; the shared
// memory it uses may be rewritten only after a barrier.
float row_sum(float v) {
#ifdef USE_SUBGROUP
  v = subgroupAdd(v);
  if (subgroupElect()) reduce_scratch[gl_SubgroupID] = v;
  barrier();
  float s = 0.0;  // each invocation adds the subgroups' sums itself: no second barrier
  for (uint i = 0; i < gl_NumSubgroups; ++i) s += reduce_scratch[i];
  return s;
#else
  float sum[REDUCE_N];
  sum[0] = v;
  workgroup_sums(sum);
  return reduce_total[0];
#endif
}

// 1 with weight_only (uniform: no reduction, no barrier), so out = (x * 1) * w = x * w exactly.
float row_inv_rms(float sum_of_squares) {
  if (p.weight_only != 0u) return 1.0;
  return 1.0 / sqrt(row_sum(sum_of_squares) / float(p.row_len) + p.eps);
}

float row_weight(float wc) { return p.zero_centered != 0 ? 1.0 + wc : wc; }

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint C = p.row_len;
  for (uint r = gl_WorkGroupID.x; r < p.n_rows; r += gl_NumWorkGroups.x) {
    const uint xr = p.x_offset + r * C, outr = p.out_offset + r * C;
    if (C <= ROW_VALUES * WG) {
      // Constant trip counts: the loops unroll and the arrays stay in registers.
      float v[ROW_VALUES], wv[ROW_VALUES];
      [[unroll]] for (uint i = 0; i < ROW_VALUES; ++i) {
        const uint c = tid + i * WG;
        if (c < C) {
          v[i] = x[xr + c];
          wv[i] = weight_to_float(w[p.w_offset + c]);
        }
      }
      float s = 0.0;
      [[unroll]] for (uint i = 0; i < ROW_VALUES; ++i) {
        const uint c = tid + i * WG;
        if (c < C) s += v[i] * v[i];
      }
      const float inv_rms = row_inv_rms(s);
      [[unroll]] for (uint i = 0; i < ROW_VALUES; ++i) {
        const uint c = tid + i * WG;
        if (c < C) out_[outr + c] = (v[i] * inv_rms) * row_weight(wv[i]);
      }
    } else {
      float s = 0.0;
      for (uint c = tid; c < C; c += WG) {
        const float v = x[xr + c];
        s += v * v;
      }
      const float inv_rms = row_inv_rms(s);
      for (uint c = tid; c < C; c += WG) {
        out_[outr + c] = (x[xr + c] * inv_rms) * row_weight(weight_to_float(w[p.w_offset + c]));
      }
    }
    if (r + gl_NumWorkGroups.x < p.n_rows) barrier();  // the next row reuses the reduction's shared memory
  }
}

#endif
