// The workgroup size and grid-stride loops. WG is specialisation constant 0, which the host sets
// from the pipeline table (pipelines.cpp); use WG, not gl_WorkGroupSize, whose components glslang
// folds to their defaults. Host code caps group counts at the device's limits; shaders loop over
// the rest.
#ifndef MOEFLUX_GRID_GLSL
#define MOEFLUX_GRID_GLSL

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;

uint global_index() { return gl_GlobalInvocationID.x; }
uint global_stride() { return gl_NumWorkGroups.x * WG; }

#endif
