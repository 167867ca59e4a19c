// Element types of stored tensors. Version 1 of the packed format stores f32, f16 and bf16;
// the quantized types (affine groups of 8/4/3/2 bits) join this enum in a later version.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace moeflux::format {

enum class Dtype : std::uint8_t { f32, f16, bf16 };

std::size_t dtype_size(Dtype dtype);
// Names as they appear in our manifest: "f32", "f16", "bf16".
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
