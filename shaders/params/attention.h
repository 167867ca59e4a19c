// attention_split, attention_prefill: causal GQA attention of the flat rows [row0, row0 + rows)
// (row = t * nh + h: query row t, head h) over the bound keys. Query row t is at position
// n_past + t and sees keys j with max(0, n_past + t - window + 1) <= j <= n_past + t (window 0:
// from key 0). attention_prefill takes whole query rows (row0 and rows multiples of nh).
#ifndef MOEFLUX_PARAMS_ATTENTION_H
#define MOEFLUX_PARAMS_ATTENTION_H
#include "params/params.h"
MF_PARAMS_BEGIN(AttentionParams)
  MF_U32 q_first;      // element offsets inside the bindings: q and out (or partial) at row0,
  MF_U32 k_first;      // k and v at key key_begin
  MF_U32 v_first;
  MF_U32 out_first;
  MF_U32 row0;
  MF_U32 rows;
  MF_U32 nh;           // query heads
  MF_U32 nkv;          // KV heads; head h reads KV head h / group
  MF_U32 group;        // nh / nkv
  MF_U32 D;            // q and k head dimension
  MF_U32 Dv;           // v and out head dimension
  MF_U32 n_past;
  MF_U32 window;       // 0: none
  MF_F32 scale;        // multiplies q . k
  MF_U32 key_begin;    // the keys bound: [key_begin, key_begin + key_count)
  MF_U32 key_count;
  MF_U32 chunk_size;   // attention_split: keys per workgroup
  MF_U32 chunk_first;  // the index of this dispatch's first chunk among all chunks
  MF_U32 n_chunks;     // all chunks (the partial layout)
  MF_U32 normalize;    // attention_split: 1 writes out (a single chunk), 0 partial states
  MF_U32 heads;        // attention_split: query heads per workgroup (of one KV head), at most 8
  MF_U32 block;        // attention_split: keys per block, a multiple of 4, at most 64
  MF_U32 aligned;      // 1 when q, k and v rows may be read as vec4s
MF_PARAMS_END(AttentionParams)
MF_PARAMS_CHECK(AttentionParams, row0, 16)
MF_PARAMS_CHECK(AttentionParams, scale, 52)
MF_PARAMS_CHECK(AttentionParams, normalize, 76)
MF_PARAMS_CHECK(AttentionParams, aligned, 88)
MF_PARAMS_SIZE(AttentionParams, 92)
#endif
