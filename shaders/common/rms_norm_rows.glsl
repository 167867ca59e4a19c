// The rows of rms_norm and add_rms_norm (ADD_RESIDUAL: x += y first, y laid out as x from
// p.y_offset). The including shader binds x, w and out (and y).
#ifndef MOEFLUX_RMS_NORM_ROWS_GLSL
#define MOEFLUX_RMS_NORM_ROWS_GLSL

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint C = p.row_len;
  for (uint r = gl_WorkGroupID.x; r < p.n_rows; r += gl_NumWorkGroups.x) {
    const uint xr = p.x_offset + r * C;
    float sum[REDUCE_N];
    sum[0] = 0.0;
    for (uint c = tid; c < C; c += WG) {
#ifdef ADD_RESIDUAL
      const float v = x[xr + c] + y[p.y_offset + r * C + c];
      x[xr + c] = v;  // read back below by this same invocation
#else
      const float v = x[xr + c];
#endif
      sum[0] += v * v;
    }
    workgroup_sums(sum);
    const float inv_rms = 1.0 / sqrt(reduce_total[0] / float(C) + p.eps);
    const uint outr = p.out_offset + r * C;
    for (uint c = tid; c < C; c += WG) {
      const float wc = weight_to_float(w[p.w_offset + c]);
      out_[outr + c] = (x[xr + c] * inv_rms) * (p.zero_centered != 0 ? 1.0 + wc : wc);
    }
    barrier();  // in place: every x of this row is read before the next row's reduction writes
  }
}

#endif
