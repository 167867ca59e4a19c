#version 450
// dequantize: rows of a quantized weight to f32, exactly as format's dequantize_rows (the check
// of common/dequant.glsl, and the widening step of quantized prefill). Eight elements per
// invocation. Bindings: 0 q_words, 1 s_words, 2 b_words (uint), 3 out f32 [n_rows, cols].
// Defines: Q_BITS (8, 4, 3, 2).
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/dequantize.h"

layout(std430, binding = 0) readonly buffer QW { uint q_words[]; };
layout(std430, binding = 1) readonly buffer SW { uint s_words[]; };
layout(std430, binding = 2) readonly buffer BW { uint b_words[]; };
layout(std430, binding = 3) writeonly buffer Out { float out_[]; };

#include "common/dequant.glsl"

void main() {
  const QuantRows r = QuantRows(p.q_first, p.s_first, p.b_first, p.row_words, p.groups, p.group_size, p.scale_bf16);
  const uint per_row = p.cols / 8, n = p.n_rows * per_row;
  for (uint i = global_index(); i < n; i += global_stride()) {
    const uint row = i / per_row, col = (i % per_row) * 8;
    float v[8];
    dequant8(r, row, col, v);
    for (uint j = 0; j < 8; ++j) out_[p.out_offset + row * p.cols + col + j] = v[j];
  }
}
