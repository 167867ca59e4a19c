// attention_decode_step: one decode row's attention with its inputs (attention_decode.comp with
// STEP): q and the new key normalised per head and rotated in the workgroups, the new key and
// value written into the caches, and each KV head's chunks merged by its last workgroup.
#ifndef MOEFLUX_PARAMS_ATTENTION_STEP_H
#define MOEFLUX_PARAMS_ATTENTION_STEP_H
#include "params/params.h"
MF_PARAMS_BEGIN(AttentionStepParams)
  MF_U32 q_first;        // element offsets inside the bindings: q [nh, D] as projected
  MF_U32 k_first;        // the k and v caches at key key_begin
  MF_U32 v_first;
  MF_U32 knew_first;     // the new key [nkv, D] and value [nkv, Dv] as projected
  MF_U32 vnew_first;
  MF_U32 cs_first;       // cos/sin table [2, 1, half]
  MF_U32 qn_first;       // q_norm [D]
  MF_U32 kn_first;       // k_norm [D]
  MF_U32 partial_first;  // the chunks' states [nh, n_chunks, 4 + Dv]
  MF_U32 out_first;      // out [nh, Dv]
  MF_U32 counter_first;  // one counter of finished chunks per KV head, 0 between dispatches
  MF_U32 nkv;
  MF_U32 group;          // query heads per KV head
  MF_U32 D;              // q and k head dimension (a multiple of 4)
  MF_U32 Dv;             // v and out head dimension (a multiple of 4)
  MF_U32 n_past;         // the new row's cache row (its position in the keys)
  MF_U32 window;         // 0: none
  MF_F32 scale;          // multiplies q . k
  MF_U32 key_begin;      // the keys bound: [key_begin, key_begin + key_count)
  MF_U32 key_count;
  MF_U32 chunk_size;     // keys per workgroup
  MF_U32 n_chunks;
  MF_U32 half_dim;       // rotary_dim / 2 (a multiple of 4)
  MF_F32 eps;
  MF_U32 norm;           // 0: no norm; 1: w; 2: (1 + w)
  MF_U32 aligned;        // 1 when the cache rows may be read as vec4s
  MF_U32 x_scale;        // 1: q, key and value scaled by 1 / rms(x) first (a folded norm)
  MF_U32 x_first;        // x [H] (a multiple of 4, as H)
  MF_U32 H;
  MF_F32 x_eps;
MF_PARAMS_END(AttentionStepParams)
MF_PARAMS_CHECK(AttentionStepParams, nkv, 44)
MF_PARAMS_CHECK(AttentionStepParams, eps, 92)
MF_PARAMS_SIZE(AttentionStepParams, 120)
#endif
