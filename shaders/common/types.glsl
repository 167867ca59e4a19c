// Included first by every shader: the extensions, and the weight element types. One of W_F32,
// W_F16, W_BF16 picks how a weight buffer stores its floats: WEIGHT_T is the element type and
// weight_to_float() widens one exactly (bf16 is read as uint16, the high half of a float32).
// Shaders that also read a norm weight pick its type likewise with G_F32, G_F16 or G_BF16
// (NORM_T, NORM4_T, norm_to_float(), norm4_to_vec4()).
#ifndef MOEFLUX_TYPES_GLSL
#define MOEFLUX_TYPES_GLSL

// Every #extension lives here, before any declaration, as GLSL requires.
// [[unroll]] (control_flow_attributes): loops over register arrays must unroll to keep them in
// registers; glslc leaves constant-count loops rolled and not every driver unrolls them.
#extension GL_EXT_control_flow_attributes : enable
#if defined(W_F16) || defined(W_BF16) || defined(G_F16) || defined(G_BF16)
#extension GL_EXT_shader_16bit_storage : require
#endif
#ifdef USE_BUFFER_REFERENCE
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_buffer_reference_uvec2 : require
#endif
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

// Macros, not functions: with 16-bit storage alone, 16-bit values may not be function arguments.
// WEIGHT4_T and weight4_to_vec4(): four weights at once.
#if defined(W_F32)
#define WEIGHT_T float
#define weight_to_float(v) (v)
#define WEIGHT4_T vec4
#define weight4_to_vec4(v) (v)
#elif defined(W_F16)
#define WEIGHT_T float16_t
#define weight_to_float(v) float(v)
#define WEIGHT4_T f16vec4
#define weight4_to_vec4(v) vec4(v)
#elif defined(W_BF16)
#define WEIGHT_T uint16_t
#define weight_to_float(v) uintBitsToFloat(uint(v) << 16)
#define WEIGHT4_T u16vec4
#define weight4_to_vec4(v) uintBitsToFloat(uvec4(v) << 16)
#endif

#if defined(G_F32)
#define NORM_T float
#define norm_to_float(v) (v)
#define NORM4_T vec4
#define norm4_to_vec4(v) (v)
#elif defined(G_F16)
#define NORM_T float16_t
#define norm_to_float(v) float(v)
#define NORM4_T f16vec4
#define norm4_to_vec4(v) vec4(v)
#elif defined(G_BF16)
#define NORM_T uint16_t
#define norm_to_float(v) uintBitsToFloat(uint(v) << 16)
#define NORM4_T u16vec4
#define norm4_to_vec4(v) uintBitsToFloat(uvec4(v) << 16)
#endif

// float(q) for quantized values q < 2^23 without a conversion instruction (integer-to-float
// conversion runs at a fraction of the rate of float arithmetic on many GPUs): the float with the
// bits of 2^23 + q is exact, and so is subtracting 2^23, so the result is exactly float(q).
float q_float(uint q) { return uintBitsToFloat(q | 0x4B000000u) - 8388608.0; }
vec4 q_float(uvec4 q) { return uintBitsToFloat(q | 0x4B000000u) - 8388608.0; }

#endif
