#version 450
// write_rows: dst[i] = src[i], the rows being contiguous on both sides (a K/V cache append).
// Bindings: 0 src f32 [n], 1 dst f32 [n] (never overlapping src: the host copies through a
// temporary when they would).
#include "common/types.glsl"
#include "common/grid.glsl"
#include "params/write_rows.h"

layout(std430, binding = 0) readonly buffer Src { float src[]; };
layout(std430, binding = 1) writeonly buffer Dst { float dst[]; };

void main() {
  for (uint i = global_index(); i < p.n; i += global_stride()) dst[p.dst_offset + i] = src[p.src_offset + i];
}
