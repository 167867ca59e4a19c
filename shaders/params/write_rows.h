// write_rows: dst[i] = src[i] for i < n (the rows are contiguous on both sides).
#ifndef MOEFLUX_PARAMS_WRITE_ROWS_H
#define MOEFLUX_PARAMS_WRITE_ROWS_H
#include "params/params.h"
MF_PARAMS_BEGIN(WriteRowsParams)
  MF_U32 src_offset;  // element offsets of each tensor inside its binding
  MF_U32 dst_offset;
  MF_U32 n;
MF_PARAMS_END(WriteRowsParams)
MF_PARAMS_CHECK(WriteRowsParams, n, 8)
MF_PARAMS_SIZE(WriteRowsParams, 12)
#endif
