// swiglu: out[i] = silu(gate[i]) * up[i] for i < n.
#ifndef MOEFLUX_PARAMS_SWIGLU_H
#define MOEFLUX_PARAMS_SWIGLU_H
#include "params/params.h"
MF_PARAMS_BEGIN(SwigluParams)
  MF_U32 gate_offset;  // element offsets of each tensor inside its binding
  MF_U32 up_offset;
  MF_U32 out_offset;
  MF_U32 n;
MF_PARAMS_END(SwigluParams)
MF_PARAMS_CHECK(SwigluParams, n, 12)
MF_PARAMS_SIZE(SwigluParams, 16)
#endif
