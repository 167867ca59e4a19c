// sigmoid_mul: out[t, c] = sigmoid(gate[t, c / (C / G)]) * x[t, c]; gate [T, G], x and out [T, C].
#ifndef MOEFLUX_PARAMS_SIGMOID_MUL_H
#define MOEFLUX_PARAMS_SIGMOID_MUL_H
#include "params/params.h"
MF_PARAMS_BEGIN(SigmoidMulParams)
  MF_U32 gate_offset;  // element offsets of each tensor inside its binding
  MF_U32 x_offset;
  MF_U32 out_offset;
  MF_U32 T;
  MF_U32 G;
  MF_U32 C;
MF_PARAMS_END(SigmoidMulParams)
MF_PARAMS_CHECK(SigmoidMulParams, T, 12)
MF_PARAMS_CHECK(SigmoidMulParams, C, 20)
MF_PARAMS_SIZE(SigmoidMulParams, 24)
#endif
