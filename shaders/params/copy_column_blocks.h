// copy_column_blocks: dst[t, dst_col + g * width + c] = src[t, g * group_stride + src_col + c].
#ifndef MOEFLUX_PARAMS_COPY_COLUMN_BLOCKS_H
#define MOEFLUX_PARAMS_COPY_COLUMN_BLOCKS_H
#include "params/params.h"
MF_PARAMS_BEGIN(CopyColumnBlocksParams)
  MF_U32 src_offset;  // element offsets of each tensor inside its binding
  MF_U32 dst_offset;
  MF_U32 T;
  MF_U32 groups;
  MF_U32 group_stride;
  MF_U32 src_col;
  MF_U32 width;
  MF_U32 dst_col;
  MF_U32 src_cols;  // columns of a src row (groups * group_stride)
  MF_U32 dst_cols;
MF_PARAMS_END(CopyColumnBlocksParams)
MF_PARAMS_CHECK(CopyColumnBlocksParams, T, 8)
MF_PARAMS_CHECK(CopyColumnBlocksParams, dst_cols, 36)
MF_PARAMS_SIZE(CopyColumnBlocksParams, 40)
#endif
