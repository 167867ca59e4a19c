// fill: out[i] = value for i < n.
#ifndef MOEFLUX_PARAMS_FILL_H
#define MOEFLUX_PARAMS_FILL_H
#include "params/params.h"
MF_PARAMS_BEGIN(FillParams)
  MF_U32 out_offset;  // element offset inside the binding
  MF_U32 n;
  MF_F32 value;
MF_PARAMS_END(FillParams)
MF_PARAMS_CHECK(FillParams, value, 8)
MF_PARAMS_SIZE(FillParams, 12)
#endif
