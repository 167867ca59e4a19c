// attention_inputs: q and k normalised per head and rotated, k and v written into the caches.
#ifndef MOEFLUX_PARAMS_ATTENTION_INPUTS_H
#define MOEFLUX_PARAMS_ATTENTION_INPUTS_H
#include "params/params.h"
MF_PARAMS_BEGIN(AttentionInputsParams)
  MF_U32 cs_offset;   // element offsets inside the bindings: cos/sin table [2, T, half]
  MF_U32 qn_offset;   // q_norm [D]
  MF_U32 kn_offset;   // k_norm [D]
  MF_U32 k_offset;    // k [T, nkv, D]
  MF_U32 v_offset;    // v [T, nkv, Dv]
  MF_U32 q_offset;    // q [T, nh, D], in place
  MF_U32 kc_offset;   // the k cache's row first_row
  MF_U32 vc_offset;   // the v cache's row first_row
  MF_U32 T;
  MF_U32 nh;
  MF_U32 nkv;
  MF_U32 D;
  MF_U32 Dv;
  MF_U32 half_dim;    // rotary_dim / 2
  MF_F32 eps;
  MF_U32 norm;        // 0: no norm; 1: w; 2: (1 + w)
MF_PARAMS_END(AttentionInputsParams)
MF_PARAMS_CHECK(AttentionInputsParams, T, 32)
MF_PARAMS_CHECK(AttentionInputsParams, eps, 56)
MF_PARAMS_SIZE(AttentionInputsParams, 64)
#endif
