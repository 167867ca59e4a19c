// moe_combine: out[t] (+)= sum over token t's experts, ascending, of weight * y[row].
#ifndef MOEFLUX_PARAMS_MOE_COMBINE_H
#define MOEFLUX_PARAMS_MOE_COMBINE_H
#include "params/params.h"
MF_PARAMS_BEGIN(MoeCombineParams)
  MF_U32 y_offset;
  MF_U32 plan_offset;   // uint index: rows [T, k] (~0u: not this batch's), then weight bits [T, k]
  MF_U32 out_offset;
  MF_U32 T;
  MF_U32 k;
  MF_U32 H;
  MF_U32 accumulate;    // 1: adds to out; 0: overwrites it
MF_PARAMS_END(MoeCombineParams)
MF_PARAMS_CHECK(MoeCombineParams, T, 12)
MF_PARAMS_SIZE(MoeCombineParams, 28)
#endif
