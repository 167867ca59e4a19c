// Affine group quantization: w = q * scale + bias per group of `group_size` consecutive elements of
// a row, q of 8/4/3/2 bits. Bit order is MLX's: a row's q values form one little-endian bit stream
// (element j at bits [j*bits, (j+1)*bits), bit 0 = the LSB of the row's first byte), so MLX
// checkpoints import byte for byte. A quantized [rows, cols] tensor is three sections, each at a
// 256-byte-aligned offset: packed q [rows, cols*bits/8], scales [rows, groups], biases [rows, groups].
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "moeflux/format/dtype.h"
#include "moeflux/format/tensor_view.h"

namespace moeflux::format {

struct QuantParams {
  int bits = 4;                     // 8, 4, 3 or 2
  int group_size = 64;              // 32, 64 or 128
  Dtype scale_dtype = Dtype::bf16;  // bf16 or f16, for scales and biases alike
};

// Throws ConfigError naming `where` unless bits, group size and scale dtype are supported and
// `cols` is a multiple of the group size.
void check_quant_params(const QuantParams& params, std::int64_t cols, std::string_view where);

struct QuantLayout {
  std::int64_t rows = 0, cols = 0;
  std::int64_t groups_per_row = 0;
  std::uint64_t row_bytes = 0;       // packed q bytes of one row: cols * bits / 8
  std::uint64_t weights_offset = 0;  // always 0
  std::uint64_t scales_offset = 0;
  std::uint64_t biases_offset = 0;
  std::uint64_t nbytes = 0;          // the whole tensor, padded to 256 bytes
};

inline constexpr std::uint64_t kQuantSectionAlignment = 256;

// Layout of a quantized 2-D tensor [rows, cols]; throws ShapeError for other ranks.
QuantLayout quant_layout(const Shape& shape, const QuantParams& params);

// Bytes a tensor of this dtype and shape takes in a packed file (float or quantized).
std::uint64_t stored_nbytes(Dtype dtype, const Shape& shape, const QuantParams& params);

QuantParams quant_params_of(const TensorView& view);  // bits from dtype; group and scale dtype from view

// Quantizes float rows [rows, cols] into `dst` (layout.nbytes bytes; padding zeroed). Scale and bias
// are rounded to scale_dtype first and q chosen against the rounded values, so every dequantized
// element lies within scale / 2 of its input.
void quantize(const float* src, const QuantLayout& layout, const QuantParams& params, std::byte* dst);

// Dequantizes rows [first_row, first_row + n_rows) of a quantized tensor at `src` into dst [n_rows, cols].
void dequantize_rows(const std::byte* src, const QuantLayout& layout, const QuantParams& params,
                     std::int64_t first_row, std::int64_t n_rows, float* dst);

// The three sections of a quantized tensor wherever they live: one packed block (quant_sections),
// or the weight/scales/biases tensors of an MLX checkpoint, which hold the same bytes.
struct QuantSections {
  const std::byte* q = nullptr;       // [rows, row_bytes]
  const std::byte* scales = nullptr;  // [rows, groups_per_row] of scale_dtype, maybe unaligned
  const std::byte* biases = nullptr;
};
QuantSections quant_sections(const std::byte* block, const QuantLayout& layout);
void dequantize_rows(const QuantSections& src, const QuantLayout& layout, const QuantParams& params,
                     std::int64_t first_row, std::int64_t n_rows, float* dst);

// Quantizes src [n_rows, cols] into rows [first_row, first_row + n_rows) of the tensor at `dst`,
// leaving its other rows and its padding untouched (quantize() is this over every row, after zeroing),
// so a large tensor can be quantized a slice of rows at a time.
void quantize_rows(const float* src, const QuantLayout& layout, const QuantParams& params,
                   std::int64_t first_row, std::int64_t n_rows, std::byte* dst);

// The q value of element `col` of a packed row (the bit-stream rule above).
std::uint32_t unpack_q(const std::byte* row, std::int64_t col, int bits);

}  // namespace moeflux::format
