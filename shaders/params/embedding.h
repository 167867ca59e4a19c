// embedding: out[t] = table[ids[t]] for the ids inside this dispatch's window of table rows.
#ifndef MOEFLUX_PARAMS_EMBEDDING_H
#define MOEFLUX_PARAMS_EMBEDDING_H
#include "params/params.h"
MF_PARAMS_BEGIN(EmbeddingParams)
  MF_U32 table_offset;  // element offsets of each tensor inside its binding
  MF_U32 ids_offset;
  MF_U32 out_offset;
  MF_U32 n_ids;         // T
  MF_U32 cols;          // H
  MF_U32 row_begin;     // the table rows bound: [row_begin, row_begin + row_count)
  MF_U32 row_count;
MF_PARAMS_END(EmbeddingParams)
MF_PARAMS_CHECK(EmbeddingParams, n_ids, 12)
MF_PARAMS_CHECK(EmbeddingParams, row_count, 24)
MF_PARAMS_SIZE(EmbeddingParams, 28)
#endif
