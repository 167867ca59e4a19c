// moe_grouped (prefill): the routed experts of many tokens as rows sorted by expert, each expert's
// rows padded to whole 64-row tiles; a tile's expert reached through the batch's expert table.
#ifndef MOEFLUX_PARAMS_MOE_GROUPED_H
#define MOEFLUX_PARAMS_MOE_GROUPED_H
#include "params/params.h"
MF_PARAMS_BEGIN(MoeGroupedParams)
  MF_U32 in_offset;     // x [T, K] (gate_up, rows gathered by token) or act [rows, K] (down)
  MF_U32 plan_offset;   // uint index: tile experts [n_tiles], tile row counts [n_tiles] (the real
                        // rows, a prefix of the tile), then row tokens [rows] (~0u: padding)
  MF_U32 table_offset;  // the batch's table [E, 6]: gate, up, down addresses as (low, high)
  MF_U32 out_offset;    // act [rows, N] (gate_up) or y [rows, N] (down)
  MF_U32 n_tiles;
  MF_U32 E;
  MF_U32 K;
  MF_U32 N;
  MF_U32 row_words;     // quantized weights: common/dequant.glsl's QuantRows, sections from the
  MF_U32 groups;        // start of each expert's block
  MF_U32 group_size;
  MF_U32 scale_bf16;
  MF_U32 s_first;
  MF_U32 b_first;
  MF_U32 in_vec4;       // 1: in_offset and K are multiples of 4, so input rows load as vec4
MF_PARAMS_END(MoeGroupedParams)
MF_PARAMS_CHECK(MoeGroupedParams, n_tiles, 16)
MF_PARAMS_CHECK(MoeGroupedParams, row_words, 32)
MF_PARAMS_CHECK(MoeGroupedParams, in_vec4, 56)
MF_PARAMS_SIZE(MoeGroupedParams, 60)
#endif
