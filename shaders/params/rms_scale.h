// rms_scale: out[r] = y[r] * (1 / sqrt(mean(x[r]^2) + eps)).
#ifndef MOEFLUX_PARAMS_RMS_SCALE_H
#define MOEFLUX_PARAMS_RMS_SCALE_H
#include "params/params.h"
MF_PARAMS_BEGIN(RmsScaleParams)
  MF_U32 x_offset;  // element offsets of each tensor inside its binding
  MF_U32 y_offset;
  MF_U32 out_offset;
  MF_U32 n_rows;
  MF_U32 H;         // x's row length
  MF_U32 C;         // y's and out's
  MF_F32 eps;
MF_PARAMS_END(RmsScaleParams)
MF_PARAMS_CHECK(RmsScaleParams, n_rows, 12)
MF_PARAMS_CHECK(RmsScaleParams, eps, 24)
MF_PARAMS_SIZE(RmsScaleParams, 28)
#endif
