// dequantize: out[r, c] = w[first_row + r, c] for the n_rows rows bound (common/dequant.glsl).
#ifndef MOEFLUX_PARAMS_DEQUANTIZE_H
#define MOEFLUX_PARAMS_DEQUANTIZE_H
#include "params/params.h"
MF_PARAMS_BEGIN(DequantizeParams)
  MF_U32 q_first;  // the QuantRows of common/dequant.glsl, for the rows bound
  MF_U32 s_first;
  MF_U32 b_first;
  MF_U32 row_words;
  MF_U32 groups;
  MF_U32 group_size;
  MF_U32 scale_bf16;
  MF_U32 out_offset;  // element offset of out inside its binding
  MF_U32 n_rows;
  MF_U32 cols;
MF_PARAMS_END(DequantizeParams)
MF_PARAMS_CHECK(DequantizeParams, scale_bf16, 24)
MF_PARAMS_CHECK(DequantizeParams, cols, 36)
MF_PARAMS_SIZE(DequantizeParams, 40)
#endif
