#version 450
// embedding: out[t] = table[ids[t]] for the ids inside the bound window of table rows; others are
// left for the dispatch whose window holds them. Exact widening, so a pure copy.
// Bindings: 0 table WEIGHT_T [row_count, cols], 1 ids int32 [T], 2 out f32 [T, cols].
// Defines: W_F32 | W_F16 | W_BF16.
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/embedding.h"

layout(std430, binding = 0) readonly buffer Table { WEIGHT_T table[]; };
layout(std430, binding = 1) readonly buffer Ids { int ids[]; };
layout(std430, binding = 2) writeonly buffer Out { float out_[]; };

void main() {
  for (uint t = gl_WorkGroupID.y; t < p.n_ids; t += gl_NumWorkGroups.y) {
    const uint row = uint(ids[p.ids_offset + t]) - p.row_begin;  // wraps when below the window
    if (row >= p.row_count) continue;
    for (uint c = global_index(); c < p.cols; c += global_stride()) {
      out_[p.out_offset + t * p.cols + c] = weight_to_float(table[p.table_offset + row * p.cols + c]);
    }
  }
}
