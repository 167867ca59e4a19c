#version 450
// add_rms_norm: x[r] += y[r], then out[r] = rms_norm(x[r]) * w (or * (1 + w)), as add then rms_norm
// compute them; one workgroup per row, held in registers up to 16 * WG elements, the sum x + y
// written once and normalised from registers (common/rms_norm_rows.glsl). Bindings: 0 y f32 [R, C],
// 1 w WEIGHT_T [C], 2 x f32 [R, C] (read and written), 3 out f32 [R, C]. Defines: W_F32 | W_F16 |
// W_BF16; USE_SUBGROUP.
#include "common/types.glsl"
#include "common/grid.glsl"
#define REDUCE_N 1
#include "common/reduce.glsl"
#include "params/rms_norm.h"
#define ADD_RESIDUAL

layout(std430, binding = 0) readonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer W { WEIGHT_T w[]; };
layout(std430, binding = 2) buffer X { float x[]; };
layout(std430, binding = 3) writeonly buffer Out { float out_[]; };

#include "common/rms_norm_rows.glsl"
