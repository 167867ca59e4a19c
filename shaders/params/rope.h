// rope: rotates x [T, heads, D] in place with a host-computed table cs [2, T, half] (cos, then sin).
#ifndef MOEFLUX_PARAMS_ROPE_H
#define MOEFLUX_PARAMS_ROPE_H
#include "params/params.h"
MF_PARAMS_BEGIN(RopeParams)
  MF_U32 x_offset;  // element offsets of each tensor inside its binding
  MF_U32 cs_offset;
  MF_U32 T;
  MF_U32 heads;
  MF_U32 D;
  MF_U32 half_dim;  // rotary_dim / 2
MF_PARAMS_END(RopeParams)
MF_PARAMS_CHECK(RopeParams, T, 8)
MF_PARAMS_CHECK(RopeParams, half_dim, 20)
MF_PARAMS_SIZE(RopeParams, 24)
#endif
