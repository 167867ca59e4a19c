#version 450
// matmul_tiled: y = x w^T for many rows of x (prefill): 64 x 64 output tiles, K in slices of 16
// through shared memory, 256 invocations each computing 4 x 4 outputs; tiles in grid-stride loops.
// Bindings: 0 x f32 [T, K], 1 w WEIGHT_T [N, K], 2 y f32 [T, ldy]. Defines: W_F32 | W_F16 | W_BF16.
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/matmul.h"

#define TILE 64
#define BK 16
#define PER 4  // outputs per invocation along each axis: TILE / 16, with WG = 256 (pipelines.cpp)

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer W { WEIGHT_T w[]; };
layout(std430, binding = 2) buffer Y { float y[]; };
#include "common/store_y.glsl"

shared float xs[TILE][BK + 1];  // +1: rows land in different banks
shared float ws[TILE][BK + 1];

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint tx = tid % 16, ty = tid / 16;
  const uint tiles_n = (p.N + TILE - 1) / TILE, tiles_t = (p.T + TILE - 1) / TILE;
  for (uint bt = gl_WorkGroupID.y; bt < tiles_t; bt += gl_NumWorkGroups.y) {
    for (uint bn = gl_WorkGroupID.x; bn < tiles_n; bn += gl_NumWorkGroups.x) {
      float acc[PER][PER];
      for (uint i = 0; i < PER; ++i)
        for (uint j = 0; j < PER; ++j) acc[i][j] = 0.0;
      for (uint k0 = 0; k0 < p.K; k0 += BK) {
        for (uint e = tid; e < TILE * BK; e += WG) {
          const uint m = e / BK, kk = e % BK, k = k0 + kk;
          const uint t = bt * TILE + m, n = bn * TILE + m;
          xs[m][kk] = (t < p.T && k < p.K) ? x[p.x_offset + t * p.K + k] : 0.0;
          ws[m][kk] = (n < p.N && k < p.K) ? weight_to_float(w[p.w_offset + n * p.K + k]) : 0.0;
        }
        barrier();
        for (uint kk = 0; kk < BK; ++kk) {
          float a[PER], b[PER];
          for (uint i = 0; i < PER; ++i) a[i] = xs[ty * PER + i][kk];
          for (uint j = 0; j < PER; ++j) b[j] = ws[tx * PER + j][kk];
          for (uint i = 0; i < PER; ++i)
            for (uint j = 0; j < PER; ++j) acc[i][j] += a[i] * b[j];
        }
        barrier();
      }
      for (uint i = 0; i < PER; ++i) {
        const uint t = bt * TILE + ty * PER + i;
        for (uint j = 0; j < PER; ++j) {
          const uint n = bn * TILE + tx * PER + j;
          if (t < p.T && n < p.N) store_y(p.y_offset + t * p.ldy + n, acc[i][j]);
        }
      }
    }
  }
}
