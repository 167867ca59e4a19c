// delta_rule_gates: g = -exp(a_log) * softplus(a + dt_bias), beta = sigmoid(b); a, b, g, beta [T, HV].
#ifndef MOEFLUX_PARAMS_DELTA_RULE_GATES_H
#define MOEFLUX_PARAMS_DELTA_RULE_GATES_H
#include "params/params.h"
MF_PARAMS_BEGIN(DeltaRuleGatesParams)
  MF_U32 a_offset;  // element offsets of each tensor inside its binding
  MF_U32 b_offset;
  MF_U32 a_log_offset;
  MF_U32 dt_bias_offset;
  MF_U32 g_offset;
  MF_U32 beta_offset;
  MF_U32 T;
  MF_U32 HV;
MF_PARAMS_END(DeltaRuleGatesParams)
MF_PARAMS_CHECK(DeltaRuleGatesParams, T, 24)
MF_PARAMS_SIZE(DeltaRuleGatesParams, 32)
#endif
