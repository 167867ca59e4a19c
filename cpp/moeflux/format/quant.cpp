// Affine group quantization in MLX's bit order (quant.h): layout, quantize, dequantize. Plain code;
// the fast kernels that read this layout live in the backends.
#include "moeflux/format/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "moeflux/format/manifest.h"
#include "moeflux/util/error.h"

namespace moeflux::format {
namespace {

float decode(std::uint16_t bits, Dtype dtype) { return dtype == Dtype::bf16 ? bf16_to_f32(bits) : f16_to_f32(bits); }

float load_scale(const std::byte* p, Dtype dtype) {
  std::uint16_t bits;
  std::memcpy(&bits, p, sizeof bits);
  return decode(bits, dtype);
}

std::uint16_t round_scale(float value, Dtype dtype) {
  return dtype == Dtype::bf16 ? f32_to_bf16(value) : f32_to_f16(value);
}

// Neighbouring 16-bit floats: bf16 and f16 are both sign-magnitude, so a step of the encoding is
// a step of the value (toward +/- infinity by the sign bit).
std::uint16_t next_down(std::uint16_t bits) {
  if ((bits & 0x7fffu) == 0) return 0x8001u;
  return static_cast<std::uint16_t>((bits & 0x8000u) ? bits + 1 : bits - 1);
}
std::uint16_t next_up(std::uint16_t bits) {
  if ((bits & 0x7fffu) == 0) return 0x0001u;
  return static_cast<std::uint16_t>((bits & 0x8000u) ? bits - 1 : bits + 1);
}
// The largest representable value <= x (the bias must not exceed the group's minimum).
std::uint16_t round_down(float x, Dtype dtype) {
  std::uint16_t bits = round_scale(x, dtype);
  while (decode(bits, dtype) > x) bits = next_down(bits);
  return bits;
}

// The smallest representable value >= x (bias + levels * scale must reach the group's maximum).
std::uint16_t round_up(float x, Dtype dtype) {
  std::uint16_t bits = round_scale(x, dtype);
  while (decode(bits, dtype) < x) bits = next_up(bits);
  return bits;
}

}  // namespace

void check_quant_params(const QuantParams& params, std::int64_t cols, std::string_view where) {
  MF_CHECK(params.bits == 8 || params.bits == 4 || params.bits == 3 || params.bits == 2, ConfigError,
           "[quantize] ", where, ": ", params.bits, "-bit quantization is not supported; use 8, 4, 3 or 2 bits");
  MF_CHECK(params.group_size == 32 || params.group_size == 64 || params.group_size == 128, ConfigError,
           "[quantize] ", where, ": group size ", params.group_size, " is not supported; use 32, 64 or 128");
  MF_CHECK(params.scale_dtype == Dtype::bf16 || params.scale_dtype == Dtype::f16, ConfigError, "[quantize] ",
           where, ": scales must be bf16 or f16, not ", dtype_name(params.scale_dtype));
  MF_CHECK(cols % params.group_size == 0, ConfigError, "[quantize] ", where, ": rows of ", cols,
           " elements do not split into groups of ", params.group_size, "; use a group size that divides ", cols);
}

QuantLayout quant_layout(const Shape& shape, const QuantParams& params) {
  MF_CHECK(shape.size() == 2, ShapeError, "[quant_layout] only 2-D tensors are quantized, not ",
           shape_string(shape));
  QuantLayout l;
  l.rows = shape[0];
  l.cols = shape[1];
  l.groups_per_row = l.cols / params.group_size;
  l.row_bytes = static_cast<std::uint64_t>(l.cols) * static_cast<std::uint64_t>(params.bits) / 8;
  const auto rows = static_cast<std::uint64_t>(l.rows);
  const std::uint64_t scale_bytes = rows * static_cast<std::uint64_t>(l.groups_per_row) * 2;
  l.scales_offset = align_up(rows * l.row_bytes, kQuantSectionAlignment);
  l.biases_offset = align_up(l.scales_offset + scale_bytes, kQuantSectionAlignment);
  l.nbytes = align_up(l.biases_offset + scale_bytes, kQuantSectionAlignment);
  return l;
}

std::uint64_t stored_nbytes(Dtype dtype, const Shape& shape, const QuantParams& params) {
  if (is_quantized(dtype)) return quant_layout(shape, params).nbytes;
  return static_cast<std::uint64_t>(element_count(shape)) * dtype_size(dtype);
}

QuantParams quant_params_of(const TensorView& view) {
  return {quant_bits(view.dtype), view.group_size, view.scale_dtype};
}

std::uint32_t unpack_q(const std::byte* row, std::int64_t col, int bits) {
  const std::uint64_t bit = static_cast<std::uint64_t>(col) * static_cast<std::uint64_t>(bits);
  const std::uint64_t byte = bit / 8;
  // A value spans at most two bytes (bits <= 8).
  std::uint32_t two = static_cast<std::uint32_t>(row[byte]);
  if ((bit % 8) + static_cast<std::uint64_t>(bits) > 8) two |= static_cast<std::uint32_t>(row[byte + 1]) << 8;
  return (two >> (bit % 8)) & ((1u << bits) - 1u);
}

void quantize_rows(const float* src, const QuantLayout& l, const QuantParams& p, std::int64_t first_row,
                   std::int64_t n_rows, std::byte* dst) {
  MF_ASSERT(first_row >= 0 && n_rows >= 0 && first_row + n_rows <= l.rows, "rows ", first_row, "+", n_rows);
  const std::uint32_t levels = (1u << p.bits) - 1u;
  for (std::int64_t r = first_row; r < first_row + n_rows; ++r) {
    std::byte* row = dst + static_cast<std::uint64_t>(r) * l.row_bytes;
    std::memset(row, 0, l.row_bytes);  // q values are OR-ed in below
    for (std::int64_t g = 0; g < l.groups_per_row; ++g) {
      const float* x = src + (r - first_row) * l.cols + g * p.group_size;
      const auto [lo, hi] = std::minmax_element(x, x + p.group_size);
      const std::uint16_t bias_bits = round_down(*lo, p.scale_dtype);
      const float bias = decode(bias_bits, p.scale_dtype);
      const float span = *hi - bias;
      const std::uint16_t scale_bits = span > 0.0f ? round_up(span / static_cast<float>(levels), p.scale_dtype)
                                                   : round_scale(1.0f, p.scale_dtype);
      const float scale = decode(scale_bits, p.scale_dtype);
      const std::uint64_t at = static_cast<std::uint64_t>(r * l.groups_per_row + g) * 2;
      std::memcpy(dst + l.scales_offset + at, &scale_bits, 2);
      std::memcpy(dst + l.biases_offset + at, &bias_bits, 2);
      for (int i = 0; i < p.group_size; ++i) {
        const float q = std::nearbyint((x[i] - bias) / scale);
        const auto v = static_cast<std::uint32_t>(std::clamp(q, 0.0f, static_cast<float>(levels)));
        const std::uint64_t bit = static_cast<std::uint64_t>(g * p.group_size + i) * static_cast<std::uint64_t>(p.bits);
        std::uint32_t shifted = v << (bit % 8);
        row[bit / 8] |= static_cast<std::byte>(shifted & 0xffu);
        if ((bit % 8) + static_cast<std::uint64_t>(p.bits) > 8) row[bit / 8 + 1] |= static_cast<std::byte>(shifted >> 8);
      }
    }
  }
}

void quantize(const float* src, const QuantLayout& l, const QuantParams& p, std::byte* dst) {
  std::memset(dst, 0, l.nbytes);
  quantize_rows(src, l, p, 0, l.rows, dst);
}

QuantSections quant_sections(const std::byte* block, const QuantLayout& l) {
  return {block + l.weights_offset, block + l.scales_offset, block + l.biases_offset};
}

void dequantize_rows(const QuantSections& src, const QuantLayout& l, const QuantParams& p,
                     std::int64_t first_row, std::int64_t n_rows, float* dst) {
  MF_ASSERT(first_row >= 0 && n_rows >= 0 && first_row + n_rows <= l.rows, "rows ", first_row, "+", n_rows);
  for (std::int64_t r = first_row; r < first_row + n_rows; ++r) {
    const std::byte* row = src.q + static_cast<std::uint64_t>(r) * l.row_bytes;
    float* out = dst + (r - first_row) * l.cols;
    for (std::int64_t g = 0; g < l.groups_per_row; ++g) {
      const std::uint64_t at = static_cast<std::uint64_t>(r * l.groups_per_row + g) * 2;
      const float scale = load_scale(src.scales + at, p.scale_dtype);
      const float bias = load_scale(src.biases + at, p.scale_dtype);
      for (int i = 0; i < p.group_size; ++i) {
        const std::int64_t c = g * p.group_size + i;
        out[c] = static_cast<float>(unpack_q(row, c, p.bits)) * scale + bias;
      }
    }
  }
}

void dequantize_rows(const std::byte* src, const QuantLayout& l, const QuantParams& p, std::int64_t first_row,
                     std::int64_t n_rows, float* dst) {
  dequantize_rows(quant_sections(src, l), l, p, first_row, n_rows, dst);
}

}  // namespace moeflux::format
