#version 450
// rms_scale: out[r] = y[r] * (1 / sqrt(sum(x[r]^2) / H + eps)) (the inputs of an attention
// projected from a folded norm: backend.h's FoldedNorm). Grid: x over blocks of COLS * WG columns
// of y, y over rows (a grid-stride loop). Every workgroup sums x's row itself, its loads issued
// together while the row fits ROW_VALUES per invocation, and scales its own block: one memory round
// trip for each, so a decode row's few thousand values take one short step rather than a long
// walk by one workgroup. Bindings: 0 x f32 [R, H], 1 y f32 [R, C], 2 out f32 [R, C] (may alias y:
// each element is read and written by one invocation). Defines: USE_SUBGROUP.
#include "common/types.glsl"
#include "common/grid.glsl"
#define REDUCE_N 1
#include "common/reduce.glsl"
#include "params/rms_scale.h"

#define ROW_VALUES 16  // x's values per invocation held in registers: rows up to 16 * WG
#define COLS 4         // y's values per invocation

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Y { float y[]; };
layout(std430, binding = 2) writeonly buffer Out { float out_[]; };

void main() {
  const uint tid = gl_LocalInvocationID.x, block = COLS * WG;
  for (uint r = gl_WorkGroupID.y; r < p.n_rows; r += gl_NumWorkGroups.y) {
    const uint xr = p.x_offset + r * p.H, yr = p.y_offset + r * p.C, outr = p.out_offset + r * p.C;
    // y's first block before x's sum, so that its loads are in flight with x's.
    uint c0 = gl_WorkGroupID.x * block;
    float v[COLS];
    [[unroll]] for (uint i = 0; i < COLS; ++i) {
      const uint c = c0 + tid + i * WG;
      v[i] = c < p.C ? y[yr + c] : 0.0;
    }
    float sum[1] = float[1](0.0);
    if (p.H <= ROW_VALUES * WG) {
      float xs[ROW_VALUES];
      [[unroll]] for (uint i = 0; i < ROW_VALUES; ++i) {
        const uint h = tid + i * WG;
        xs[i] = h < p.H ? x[xr + h] : 0.0;
      }
      [[unroll]] for (uint i = 0; i < ROW_VALUES; ++i) sum[0] += xs[i] * xs[i];
    } else {
      for (uint h = tid; h < p.H; h += WG) sum[0] += x[xr + h] * x[xr + h];
    }
    workgroup_sums(sum);
    const float inv_rms = 1.0 / sqrt(reduce_total[0] / float(p.H) + p.eps);
    while (c0 < p.C) {  // more blocks than workgroups: the next ones in turn
      [[unroll]] for (uint i = 0; i < COLS; ++i) {
        const uint c = c0 + tid + i * WG;
        if (c < p.C) out_[outr + c] = v[i] * inv_rms;
      }
      c0 += gl_NumWorkGroups.x * block;
      [[unroll]] for (uint i = 0; i < COLS; ++i) {
        const uint c = c0 + tid + i * WG;
        v[i] = c < p.C ? y[yr + c] : 0.0;
      }
    }
    if (r + gl_NumWorkGroups.y < p.n_rows) barrier();  // the next row reuses the reduction's shared memory
  }
}
