// gated_delta_rule: per value head h (key head h / (HV / HK)) and token, q^ = l2n(q) * scale,
// k^ = l2n(k); S = exp(g) S; u = beta (v - S^T k^); S += k^ u^T; out = S^T q^.
#ifndef MOEFLUX_PARAMS_GATED_DELTA_RULE_H
#define MOEFLUX_PARAMS_GATED_DELTA_RULE_H
#include "params/params.h"
MF_PARAMS_BEGIN(GatedDeltaRuleParams)
  MF_U32 q_offset;  // element offsets of each tensor inside its binding
  MF_U32 k_offset;
  MF_U32 v_offset;
  MF_U32 g_offset;
  MF_U32 beta_offset;
  MF_U32 state_offset;
  MF_U32 out_offset;
  MF_U32 T;
  MF_U32 HK;
  MF_U32 HV;
  MF_U32 dk;
  MF_U32 dv;
  MF_F32 scale;       // dk^-0.5
  MF_U32 head_first;  // the value heads of this dispatch; the state window starts at head_first
  MF_U32 n_heads;
MF_PARAMS_END(GatedDeltaRuleParams)
MF_PARAMS_CHECK(GatedDeltaRuleParams, T, 28)
MF_PARAMS_CHECK(GatedDeltaRuleParams, scale, 48)
MF_PARAMS_SIZE(GatedDeltaRuleParams, 60)
#endif
