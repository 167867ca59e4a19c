// gated_rms_norm: out[r] = (w * (x[r] / rms(x[r]))) * silu(z[r]); x, z, out [R, C], w [C].
#ifndef MOEFLUX_PARAMS_GATED_RMS_NORM_H
#define MOEFLUX_PARAMS_GATED_RMS_NORM_H
#include "params/params.h"
MF_PARAMS_BEGIN(GatedRmsNormParams)
  MF_U32 x_offset;  // element offsets of each tensor inside its binding
  MF_U32 z_offset;
  MF_U32 w_offset;
  MF_U32 out_offset;
  MF_U32 n_rows;
  MF_U32 row_len;
  MF_F32 eps;
MF_PARAMS_END(GatedRmsNormParams)
MF_PARAMS_CHECK(GatedRmsNormParams, n_rows, 16)
MF_PARAMS_CHECK(GatedRmsNormParams, eps, 24)
MF_PARAMS_SIZE(GatedRmsNormParams, 28)
#endif
