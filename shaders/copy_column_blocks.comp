#version 450
// copy_column_blocks: dst[t, dst_col + g * width + c] = src[t, g * group_stride + src_col + c], one
// invocation per copied element. Bindings: 0 src f32 [T, src_cols], 1 dst f32 [T, dst_cols].
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/copy_column_blocks.h"

layout(std430, binding = 0) readonly buffer Src { float src[]; };
layout(std430, binding = 1) writeonly buffer Dst { float dst[]; };

void main() {
  const uint per_row = p.groups * p.width, n = p.T * per_row;
  for (uint i = global_index(); i < n; i += global_stride()) {
    const uint t = i / per_row, r = i % per_row, g = r / p.width, c = r % p.width;
    dst[p.dst_offset + t * p.dst_cols + p.dst_col + r] = src[p.src_offset + t * p.src_cols + g * p.group_stride + p.src_col + c];
  }
}
