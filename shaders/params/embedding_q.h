// embedding_q: out[t] = the dequantized table row ids[t], for the ids inside this dispatch's
// window of table rows.
#ifndef MOEFLUX_PARAMS_EMBEDDING_Q_H
#define MOEFLUX_PARAMS_EMBEDDING_Q_H
#include "params/params.h"
MF_PARAMS_BEGIN(EmbeddingQParams)
  MF_U32 q_first;     // the QuantRows of the table rows bound
  MF_U32 s_first;
  MF_U32 b_first;
  MF_U32 row_words;
  MF_U32 groups;
  MF_U32 group_size;
  MF_U32 scale_bf16;
  MF_U32 ids_offset;  // element offsets of ids and out inside their bindings
  MF_U32 out_offset;
  MF_U32 n_ids;       // T
  MF_U32 cols;        // H
  MF_U32 row_begin;   // the table rows bound: [row_begin, row_begin + row_count)
  MF_U32 row_count;
MF_PARAMS_END(EmbeddingQParams)
MF_PARAMS_CHECK(EmbeddingQParams, ids_offset, 28)
MF_PARAMS_CHECK(EmbeddingQParams, row_count, 48)
MF_PARAMS_SIZE(EmbeddingQParams, 52)
#endif
