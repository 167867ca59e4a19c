#version 450
// rms_norm: out[r] = (x[r] * (1 / sqrt(sum(x[r]^2) / C + eps))) * w (or * (1 + w)); one workgroup
// per row, rows in a grid-stride loop, a row held in registers up to 16 * WG elements
// (common/rms_norm_rows.glsl). Bindings: 0 x f32 [R, C], 1 w WEIGHT_T [C], 2 out f32 [R, C] (may
// alias x). With weight_only, out = x * w (apply_norm_weight). Defines: W_F32 | W_F16 | W_BF16;
// USE_SUBGROUP.
#include "common/types.glsl"
#include "common/grid.glsl"
#define REDUCE_N 1
#include "common/reduce.glsl"
#include "params/rms_norm.h"

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer W { WEIGHT_T w[]; };
layout(std430, binding = 2) writeonly buffer Out { float out_[]; };

#include "common/rms_norm_rows.glsl"
