// add: out[i] = a[i] + b[i] for i < n.
#ifndef MOEFLUX_PARAMS_ADD_H
#define MOEFLUX_PARAMS_ADD_H
#include "params/params.h"
MF_PARAMS_BEGIN(AddParams)
  MF_U32 a_offset;  // element offsets of each tensor inside its binding
  MF_U32 b_offset;
  MF_U32 out_offset;
  MF_U32 n;
MF_PARAMS_END(AddParams)
MF_PARAMS_CHECK(AddParams, n, 12)
MF_PARAMS_SIZE(AddParams, 16)
#endif
