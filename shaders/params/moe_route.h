// moe_route: softmax over each token's router logits, then its top k (ties to the lower expert).
#ifndef MOEFLUX_PARAMS_MOE_ROUTE_H
#define MOEFLUX_PARAMS_MOE_ROUTE_H
#include "params/params.h"
MF_PARAMS_BEGIN(MoeRouteParams)
  MF_U32 logits_offset;   // element offsets inside the bindings
  MF_U32 routing_offset;
  MF_U32 T;               // tokens
  MF_U32 E;               // experts (at most MAX_E of moe_route.comp)
  MF_U32 k;               // experts per token (at most MAX_K)
  MF_U32 normalize;       // 1: the k weights are divided by their sum
MF_PARAMS_END(MoeRouteParams)
MF_PARAMS_CHECK(MoeRouteParams, k, 16)
MF_PARAMS_SIZE(MoeRouteParams, 24)
#endif
