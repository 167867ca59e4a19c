// attention_combine: out for flat rows (t * nh + h) from the partial states of every chunk of keys
// (attention_split): per row and chunk 4 + Dv rounded up to 4 floats (m, l, unused, unused, o).
#ifndef MOEFLUX_PARAMS_ATTENTION_COMBINE_H
#define MOEFLUX_PARAMS_ATTENTION_COMBINE_H
#include "params/params.h"
MF_PARAMS_BEGIN(AttentionCombineParams)
  MF_U32 partial_first;  // element offsets inside the bindings, at this dispatch's first row
                         // (partial_first: a multiple of 4)
  MF_U32 out_first;
  MF_U32 rows;
  MF_U32 n_chunks;
  MF_U32 Dv;
MF_PARAMS_END(AttentionCombineParams)
MF_PARAMS_CHECK(AttentionCombineParams, rows, 8)
MF_PARAMS_SIZE(AttentionCombineParams, 20)
#endif
