// moe_gate_up, moe_down: the routed experts of few tokens as (token, slot) pairs, each expert's
// weights reached through the layer's expert table (device addresses of gate, up and down).
#ifndef MOEFLUX_PARAMS_MOE_PAIRS_H
#define MOEFLUX_PARAMS_MOE_PAIRS_H
#include "params/params.h"
MF_PARAMS_BEGIN(MoePairParams)
  MF_U32 in_offset;       // element offset of the input: x [T, K] (gate_up) or act [T * k, K] (down)
  MF_U32 routing_offset;  // of routing [T, 2k]: expert ids, then weight bits
  MF_U32 table_offset;    // of the layer's table [E, 6]: gate, up, down addresses as (low, high)
  MF_U32 out_offset;      // of act [T * k, N] (gate_up) or out [T, N] (down)
  MF_U32 T;
  MF_U32 k;
  MF_U32 E;
  MF_U32 K;               // input length
  MF_U32 N;               // output rows
  MF_U32 accumulate;      // down: 1 adds to out, 0 overwrites it
  MF_U32 row_words;       // quantized weights: common/dequant.glsl's QuantRows, sections from the
  MF_U32 groups;          // start of each expert's block
  MF_U32 group_size;
  MF_U32 scale_bf16;
  MF_U32 s_first;
  MF_U32 b_first;
  MF_U32 fold;            // down: 1 also writes scaled = out * the norm weight (FoldedNorm)
  MF_U32 fold_w_first;    // the weight's element offset in its binding
  MF_U32 fold_w_dtype;    // 0 f32, 1 bf16, 2 f16
  MF_U32 fold_zero_centered;  // 1: (1 + w)
  MF_U32 fold_out_first;  // scaled's element offset
MF_PARAMS_END(MoePairParams)
MF_PARAMS_CHECK(MoePairParams, T, 16)
MF_PARAMS_CHECK(MoePairParams, row_words, 40)
MF_PARAMS_SIZE(MoePairParams, 84)
#endif
