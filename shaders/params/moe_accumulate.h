// moe_accumulate: out[tokens[r]] += y[r] * weights[r] for the rows r of one expert whose token lies
// in this dispatch's window of out rows.
#ifndef MOEFLUX_PARAMS_MOE_ACCUMULATE_H
#define MOEFLUX_PARAMS_MOE_ACCUMULATE_H
#include "params/params.h"
MF_PARAMS_BEGIN(MoeAccumulateParams)
  MF_U32 y_offset;      // element offsets inside the bindings
  MF_U32 route_offset;  // in pairs: (token, weight bits) of row 0 of this dispatch
  MF_U32 out_offset;
  MF_U32 n_rows;        // rows of y in this dispatch
  MF_U32 cols;          // H
  MF_U32 row_begin;     // the out rows bound: [row_begin, row_begin + row_count)
  MF_U32 row_count;
MF_PARAMS_END(MoeAccumulateParams)
MF_PARAMS_CHECK(MoeAccumulateParams, n_rows, 12)
MF_PARAMS_CHECK(MoeAccumulateParams, row_count, 24)
MF_PARAMS_SIZE(MoeAccumulateParams, 28)
#endif
