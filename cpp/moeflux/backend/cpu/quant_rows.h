// Scalar access to a quantized weight's rows (format/quant.h layout): q values, scales and biases.
// Shared by the portable kernels and the exact widening; memcpy reads allow any alignment.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

#include "moeflux/backend/cpu/weight.h"
#include "moeflux/format/dtype.h"

namespace moeflux::backend::cpu {

static_assert(std::endian::native == std::endian::little, "the packed bit streams are little-endian");

// format's f16_to_f32, inline for the portable kernels' inner loops; exact, like every f16 -> f32.
inline float f16_bits_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t{h & 0x8000u} << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float
    const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return sign ? -magnitude : magnitude;
  }
  const std::uint32_t bits =
      sign | (exponent == 0x1fu ? 0x7f800000u : (exponent + 112u) << 23) | (mantissa << 13);
  return std::bit_cast<float>(bits);
}

inline float half_bits_to_float(std::uint16_t bits, Dtype dtype) {
  return dtype == Dtype::bf16 ? std::bit_cast<float>(std::uint32_t{bits} << 16) : f16_bits_to_float(bits);
}

inline float load_half(const std::byte* p, Dtype dtype) {
  std::uint16_t bits;
  std::memcpy(&bits, p, sizeof bits);
  return half_bits_to_float(bits, dtype);
}

inline const std::byte* q_row(const WeightRef& w, std::int64_t row) {
  return w.data + static_cast<std::uint64_t>(row) * w.layout.row_bytes;
}

// Scale and bias of group g of a row.
inline float group_scale(const WeightRef& w, std::int64_t row, std::int64_t g) {
  const auto at = static_cast<std::uint64_t>(row * w.layout.groups_per_row + g) * 2;
  return load_half(w.data + w.layout.scales_offset + at, w.quant.scale_dtype);
}
inline float group_bias(const WeightRef& w, std::int64_t row, std::int64_t g) {
  const auto at = static_cast<std::uint64_t>(row * w.layout.groups_per_row + g) * 2;
  return load_half(w.data + w.layout.biases_offset + at, w.quant.scale_dtype);
}

// The 8 q values of elements [8c, 8c + 8) of a row: `Bits` bytes, one little-endian bit stream.
template <int Bits>
inline void unpack8(const std::byte* row, std::int64_t c, float q[8]) {
  if constexpr (Bits == 8) {  // whole bytes: a plain widening loop the compiler vectorises
    for (int l = 0; l < 8; ++l) q[l] = static_cast<float>(std::to_integer<std::uint8_t>(row[c * 8 + l]));
    return;
  }
  std::uint64_t word = 0;
  std::memcpy(&word, row + c * Bits, Bits);
  constexpr std::uint64_t mask = (std::uint64_t{1} << Bits) - 1;
  for (int l = 0; l < 8; ++l) q[l] = static_cast<float>((word >> (l * Bits)) & mask);
}

inline void unpack8(const std::byte* row, std::int64_t c, int bits, float q[8]) {
  switch (bits) {
    case 8: return unpack8<8>(row, c, q);
    case 4: return unpack8<4>(row, c, q);
    case 3: return unpack8<3>(row, c, q);
    default: return unpack8<2>(row, c, q);
  }
}

// w = q * scale + bias, rounded after the product and after the sum, as format::dequantize_rows.
inline void dequantize_row_exact(const WeightRef& w, std::int64_t row, float* out) {
  const std::byte* qr = q_row(w, row);
  const int G = w.quant.group_size;
  for (std::int64_t g = 0; g < w.layout.groups_per_row; ++g) {
    const float s = group_scale(w, row, g), b = group_bias(w, row, g);
    for (std::int64_t c = g * G / 8; c < (g + 1) * G / 8; ++c) {
      float q[8];
      unpack8(qr, c, w.quant.bits, q);
      for (int l = 0; l < 8; ++l) {
        const float scaled = q[l] * s;
        out[c * 8 + l] = scaled + b;
      }
    }
  }
}

}  // namespace moeflux::backend::cpu
