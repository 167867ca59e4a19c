// Workgroup sums of REDUCE_N floats per invocation, through subgroup arithmetic (USE_SUBGROUP)
// or a shared-memory tree (the portable path). Before including: `#define REDUCE_N <count>`.
// WG (common/grid.glsl) must be a power of two.
#ifndef MOEFLUX_REDUCE_GLSL
#define MOEFLUX_REDUCE_GLSL

#include "common/grid.glsl"
// Per value, one slot per invocation (tree) or per subgroup (at most one per invocation).
shared float reduce_scratch[REDUCE_N * WG];
shared float reduce_total[REDUCE_N];

// Sums v[j] over the workgroup into reduce_total[j]. Call from uniform control flow; the totals
// stay valid until the next call.
void workgroup_sums(float v[REDUCE_N]) {
  const uint tid = gl_LocalInvocationID.x;
#ifdef USE_SUBGROUP
  for (uint j = 0; j < REDUCE_N; ++j) v[j] = subgroupAdd(v[j]);
  if (subgroupElect()) {
    for (uint j = 0; j < REDUCE_N; ++j) reduce_scratch[j * WG + gl_SubgroupID] = v[j];
  }
  barrier();
  for (uint j = tid; j < REDUCE_N; j += WG) {
    float s = 0.0;
    for (uint i = 0; i < gl_NumSubgroups; ++i) s += reduce_scratch[j * WG + i];
    reduce_total[j] = s;
  }
#else
  for (uint j = 0; j < REDUCE_N; ++j) reduce_scratch[j * WG + tid] = v[j];
  barrier();
  for (uint stride = WG / 2; stride > 0; stride >>= 1) {
    if (tid < stride) {
      for (uint j = 0; j < REDUCE_N; ++j) reduce_scratch[j * WG + tid] += reduce_scratch[j * WG + tid + stride];
    }
    barrier();
  }
  for (uint j = tid; j < REDUCE_N; j += WG) reduce_total[j] = reduce_scratch[j * WG];
#endif
  barrier();
}

#endif
