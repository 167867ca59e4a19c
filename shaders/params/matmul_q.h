// matmul_vec_q, matmul_tiled_q: y[t, n] = x[t] . w[n] for t < T and the N rows of a quantized w
// bound (its three sections as windows; common/dequant.glsl's QuantRows), or y[t, n] += with
// accumulate; matmul_vec_q_norm with x[t] normalised as rms_norm does (common/input_norm.glsl).
#ifndef MOEFLUX_PARAMS_MATMUL_Q_H
#define MOEFLUX_PARAMS_MATMUL_Q_H
#include "params/params.h"
MF_PARAMS_BEGIN(MatmulQParams)
  MF_U32 x_offset;   // element offsets of x and y inside their bindings
  MF_U32 y_offset;
  MF_U32 T;          // rows of x
  MF_U32 K;          // row length of x and w (a multiple of 32)
  MF_U32 N;          // rows of w in this dispatch
  MF_U32 ldy;        // elements between rows of y (the full N)
  MF_U32 q_first;    // the QuantRows of the rows bound
  MF_U32 s_first;
  MF_U32 b_first;
  MF_U32 row_words;
  MF_U32 groups;
  MF_U32 group_size;
  MF_U32 scale_bf16;
  MF_U32 accumulate;     // 1: y += the product
  MF_U32 g_offset;       // matmul_vec_q_norm: the norm weight's offset in its binding
  MF_F32 eps;            //   and rms_norm's options
  MF_U32 zero_centered;
MF_PARAMS_END(MatmulQParams)
MF_PARAMS_CHECK(MatmulQParams, T, 8)
MF_PARAMS_CHECK(MatmulQParams, q_first, 24)
MF_PARAMS_CHECK(MatmulQParams, scale_bf16, 48)
MF_PARAMS_CHECK(MatmulQParams, eps, 60)
MF_PARAMS_SIZE(MatmulQParams, 68)
#endif
