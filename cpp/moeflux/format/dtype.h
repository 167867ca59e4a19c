// Element types of stored tensors: f32, f16, bf16, and the affine-quantized q8/q4/q3/q2
// (format/quant.h: groups of w = q * scale + bias in MLX's bit order).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace moeflux::format {

enum class Dtype : std::uint8_t { f32, f16, bf16, q8, q4, q3, q2 };

bool is_quantized(Dtype dtype);
int quant_bits(Dtype dtype);             // 8/4/3/2; 0 for float types
Dtype quantized_dtype(int bits);         // throws ConfigError for bits other than 8/4/3/2

// Bytes per element of a float type (InternalError for quantized types: see quant_layout).
std::size_t dtype_size(Dtype dtype);
// Names as they appear in our manifest: "f32", "f16", "bf16", "q8", "q4", "q3", "q2".
std::string_view dtype_name(Dtype dtype);
// Parses our manifest names; throws FormatError naming `where` for anything else.
Dtype parse_dtype(std::string_view name, std::string_view where);
// Maps a safetensors dtype ("F32", "F16", "BF16"); throws Unsupported for other types.
Dtype dtype_from_safetensors(std::string_view name, std::string_view where);

float bf16_to_f32(std::uint16_t bits);
std::uint16_t f32_to_bf16(float value);  // round to nearest even, NaN preserved
float f16_to_f32(std::uint16_t bits);
std::uint16_t f32_to_f16(float value);   // round to nearest even

// Converts `count` elements of `src` (stored as `dtype`) to float32.
void to_f32(const void* src, Dtype dtype, std::size_t count, float* dst);
// Converts `count` float32 values to `dtype`, writing dtype_size(dtype) * count bytes.
void from_f32(const float* src, Dtype dtype, std::size_t count, void* dst);

}  // namespace moeflux::format
