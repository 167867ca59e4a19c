// moe_router_topk: router logits (x w^T) and their softmax top-k for few tokens in one dispatch.
#ifndef MOEFLUX_PARAMS_MOE_ROUTER_TOPK_H
#define MOEFLUX_PARAMS_MOE_ROUTER_TOPK_H
#include "params/params.h"
MF_PARAMS_BEGIN(MoeRouterTopkParams)
  MF_U32 x_offset;        // element offsets inside the bindings
  MF_U32 w_offset;
  MF_U32 logits_offset;
  MF_U32 routing_offset;
  MF_U32 T;               // tokens
  MF_U32 K;               // hidden size (at most MAX_K_X of the shader)
  MF_U32 E;               // experts (at most LANE_VALUES * subgroup size)
  MF_U32 k;               // experts per token (at most the subgroup size)
  MF_U32 normalize;       // 1: the k weights are divided by their sum
MF_PARAMS_END(MoeRouterTopkParams)
MF_PARAMS_CHECK(MoeRouterTopkParams, T, 16)
MF_PARAMS_CHECK(MoeRouterTopkParams, normalize, 32)
MF_PARAMS_SIZE(MoeRouterTopkParams, 36)
#endif
