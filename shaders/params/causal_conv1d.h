// causal_conv1d: out[t][c] = silu(sum_i w[c][i] * x_{t-K+1+i}[c]) with the left context from state
// [K-1, C], which then holds the last K-1 inputs.
#ifndef MOEFLUX_PARAMS_CAUSAL_CONV1D_H
#define MOEFLUX_PARAMS_CAUSAL_CONV1D_H
#include "params/params.h"
MF_PARAMS_BEGIN(CausalConv1dParams)
  MF_U32 x_offset;  // element offsets of each tensor inside its binding
  MF_U32 w_offset;
  MF_U32 state_offset;
  MF_U32 out_offset;
  MF_U32 T;
  MF_U32 C;
  MF_U32 K;
MF_PARAMS_END(CausalConv1dParams)
MF_PARAMS_CHECK(CausalConv1dParams, T, 16)
MF_PARAMS_CHECK(CausalConv1dParams, K, 24)
MF_PARAMS_SIZE(CausalConv1dParams, 28)
#endif
