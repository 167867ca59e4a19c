// rms_norm: out[r] = x[r] * (1 / sqrt(mean(x[r]^2) + eps)) * w, or * (1 + w) when zero_centered.
#ifndef MOEFLUX_PARAMS_RMS_NORM_H
#define MOEFLUX_PARAMS_RMS_NORM_H
#include "params/params.h"
MF_PARAMS_BEGIN(RmsNormParams)
  MF_U32 x_offset;  // element offsets of each tensor inside its binding
  MF_U32 w_offset;
  MF_U32 out_offset;
  MF_U32 n_rows;
  MF_U32 row_len;
  MF_F32 eps;
  MF_U32 zero_centered;  // 0 or 1
  MF_U32 weight_only;    // 1: out = x * w (apply_norm_weight), r = 1
MF_PARAMS_END(RmsNormParams)
MF_PARAMS_CHECK(RmsNormParams, n_rows, 12)
MF_PARAMS_CHECK(RmsNormParams, eps, 20)
MF_PARAMS_CHECK(RmsNormParams, zero_centered, 24)
MF_PARAMS_SIZE(RmsNormParams, 32)
#endif
