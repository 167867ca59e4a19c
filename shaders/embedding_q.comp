#version 450
// embedding_q: out[t] = the row ids[t] of a quantized table, dequantized exactly as format does,
// for the ids inside the bound window of table rows; others are left for the dispatch whose
// window holds them. Eight columns (one dequant8 block) per invocation.
// Bindings: 0 q_words, 1 s_words, 2 b_words (uint), 3 ids int32 [T], 4 out f32 [T, cols].
// Defines: Q_BITS (8, 4, 3, 2).
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/embedding_q.h"

layout(std430, binding = 0) readonly buffer QW { uint q_words[]; };
layout(std430, binding = 1) readonly buffer SW { uint s_words[]; };
layout(std430, binding = 2) readonly buffer BW { uint b_words[]; };
layout(std430, binding = 3) readonly buffer Ids { int ids[]; };
layout(std430, binding = 4) writeonly buffer Out { float out_[]; };

#include "common/dequant.glsl"

void main() {
  const QuantRows r = QuantRows(p.q_first, p.s_first, p.b_first, p.row_words, p.groups, p.group_size, p.scale_bf16);
  const uint blocks = p.cols / 8;
  for (uint t = gl_WorkGroupID.y; t < p.n_ids; t += gl_NumWorkGroups.y) {
    const uint row = uint(ids[p.ids_offset + t]) - p.row_begin;  // wraps when below the window
    if (row >= p.row_count) continue;
    for (uint b = global_index(); b < blocks; b += global_stride()) {
      float v[8];
      dequant8(r, row, b * 8, v);
      for (uint i = 0; i < 8; ++i) out_[p.out_offset + t * p.cols + b * 8 + i] = v[i];
    }
  }
}
