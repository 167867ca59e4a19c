// gated_delta_chunk_prep and gated_delta_chunk: the chunked form of gated_delta_rule (prefill).
// Per value head h and chunk of `chunk` tokens with gamma the cumulative log-decay:
// prep: r [T, HV, 2] (q's and k's 1 / l2 norm), A[i][j] = beta_i e^(gamma_i - gamma_j) k^_i.k^_j
// (j < i) and B[i][j] = e^(gamma_i - gamma_j) q^_i.k^_j (j <= i) in ab [HV, n_chunks, 2, chunk, chunk],
// both in one scratch binding;
// chunk: per state column, u by forward substitution, the outputs, then the state.
#ifndef MOEFLUX_PARAMS_GATED_DELTA_CHUNK_H
#define MOEFLUX_PARAMS_GATED_DELTA_CHUNK_H
#include "params/params.h"
MF_PARAMS_BEGIN(GatedDeltaChunkParams)
  MF_U32 q_offset;  // element offsets of each tensor inside its binding
  MF_U32 k_offset;
  MF_U32 v_offset;
  MF_U32 g_offset;
  MF_U32 beta_offset;
  MF_U32 ab_offset;  // in the scratch binding
  MF_U32 r_offset;   // in the scratch binding
  MF_U32 state_offset;
  MF_U32 out_offset;
  MF_U32 T;
  MF_U32 HK;
  MF_U32 HV;
  MF_U32 dk;
  MF_U32 dv;
  MF_U32 chunk;       // tokens per chunk, at most MAX_CHUNK
  MF_F32 scale;       // dk^-0.5
  MF_U32 head_first;  // gated_delta_chunk: the value heads of this dispatch (the state window's)
  MF_U32 n_heads;
MF_PARAMS_END(GatedDeltaChunkParams)
MF_PARAMS_CHECK(GatedDeltaChunkParams, T, 36)
MF_PARAMS_CHECK(GatedDeltaChunkParams, scale, 60)
MF_PARAMS_SIZE(GatedDeltaChunkParams, 72)
#endif
