// matmul_vec_q_many: y_i[t, n] = x[t] . w_i[n] for t < T and up to four quantized weights w_i of
// one form sharing x, each read by device address (its whole block: q at word 0, scales and
// biases at s_first, b_first 16-bit values). Rows of the dispatch: w_0's N0, then w_1's N1, ...;
// a slot left unused has N = 0.
#ifndef MOEFLUX_PARAMS_MATMUL_VEC_Q_MANY_H
#define MOEFLUX_PARAMS_MATMUL_VEC_Q_MANY_H
#include "params/params.h"
#define MF_MATMUL_MANY_WEIGHT(i) \
  MF_U32 address##i##_lo;        \
  MF_U32 address##i##_hi;        \
  MF_U32 s_first##i;             \
  MF_U32 b_first##i;             \
  MF_U32 N##i;                   \
  MF_U32 y_offset##i;            // element offset of y_i [T, N_i] in its binding
MF_PARAMS_BEGIN(MatmulVecQManyParams)
  MF_U32 x_offset;   // element offset of x inside its binding
  MF_U32 T;          // rows of x
  MF_U32 K;          // row length of x and of every w_i (a multiple of 32)
  MF_U32 row_words;  // the QuantRows geometry every w_i shares
  MF_U32 groups;
  MF_U32 group_size;
  MF_U32 scale_bf16;
  MF_MATMUL_MANY_WEIGHT(0)
  MF_MATMUL_MANY_WEIGHT(1)
  MF_MATMUL_MANY_WEIGHT(2)
  MF_MATMUL_MANY_WEIGHT(3)
MF_PARAMS_END(MatmulVecQManyParams)
MF_PARAMS_CHECK(MatmulVecQManyParams, address0_lo, 28)
MF_PARAMS_CHECK(MatmulVecQManyParams, address1_lo, 52)
MF_PARAMS_CHECK(MatmulVecQManyParams, y_offset3, 120)
MF_PARAMS_SIZE(MatmulVecQManyParams, 124)
#undef MF_MATMUL_MANY_WEIGHT
#endif
