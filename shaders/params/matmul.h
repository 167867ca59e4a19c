// matmul (matmul_vec, matmul_tiled): y[t, n] (+)= x[t] . w[n] for t < T and the N rows of w bound;
// matmul_vec_norm with x[t] normalised as rms_norm does (common/input_norm.glsl);
// matmul_vec_norm_route also routes the logits y (common/route_topk.glsl).
#ifndef MOEFLUX_PARAMS_MATMUL_H
#define MOEFLUX_PARAMS_MATMUL_H
#include "params/params.h"
MF_PARAMS_BEGIN(MatmulParams)
  MF_U32 x_offset;  // element offsets of each tensor inside its binding
  MF_U32 w_offset;
  MF_U32 y_offset;
  MF_U32 T;         // rows of x
  MF_U32 K;         // row length of x and w
  MF_U32 N;         // rows of w in this dispatch
  MF_U32 ldy;       // elements between rows of y (the full N)
  MF_U32 accumulate;     // 1: y += the product
  MF_U32 g_offset;       // matmul_vec_norm: the norm weight's offset in its binding
  MF_F32 eps;            //   and rms_norm's options
  MF_U32 zero_centered;
  MF_U32 routing_offset;  // matmul_vec_norm_route: the routing [T, 2k] of the logits y [T, N]
  MF_U32 counter_offset;  //   the finished-workgroups counter (0 between dispatches)
  MF_U32 k;               //   experts per token
  MF_U32 normalize;       //   1: the k weights divided by their sum
MF_PARAMS_END(MatmulParams)
MF_PARAMS_CHECK(MatmulParams, T, 12)
MF_PARAMS_CHECK(MatmulParams, ldy, 24)
MF_PARAMS_CHECK(MatmulParams, eps, 36)
MF_PARAMS_SIZE(MatmulParams, 60)
#endif
