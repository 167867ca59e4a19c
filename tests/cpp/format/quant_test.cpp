// quant.h: section layout for every bits and group size, the scale/2 round-trip bound for every
// bits x group x scale dtype (constant groups and outliers included), and MLX's bit order held
// against hand-packed fixtures.
#include "moeflux/format/quant.h"

#include <cmath>
#include <cstring>
#include <random>

#include "fixtures.h"
#include "moeflux/format/manifest.h"

namespace moeflux::format {
namespace {

constexpr int kBits[] = {8, 4, 3, 2};
constexpr int kGroups[] = {32, 64, 128};

std::vector<std::byte> bytes_of(std::initializer_list<int> values) {
  std::vector<std::byte> out;
  for (int v : values) out.push_back(static_cast<std::byte>(v));
  return out;
}

TEST(Quant, LayoutOfAWorkedExample) {
  // 3 rows of 128 4-bit values in groups of 64: 192 bytes of q, then 12 bytes of scales and of biases.
  const QuantLayout l = quant_layout({3, 128}, {4, 64, Dtype::bf16});
  EXPECT_EQ(l.groups_per_row, 2);
  EXPECT_EQ(l.row_bytes, 64u);
  EXPECT_EQ(l.weights_offset, 0u);
  EXPECT_EQ(l.scales_offset, 256u);
  EXPECT_EQ(l.biases_offset, 512u);
  EXPECT_EQ(l.nbytes, 768u);
}

TEST(Quant, LayoutOfEveryBitsAndGroup) {
  for (int bits : kBits) {
    for (int group : kGroups) {
      for (std::int64_t rows : {1, 5, 97}) {
        const std::int64_t cols = 384;  // a multiple of every group size
        const QuantLayout l = quant_layout({rows, cols}, {bits, group, Dtype::f16});
        const auto r = static_cast<std::uint64_t>(rows);
        const std::uint64_t section = r * static_cast<std::uint64_t>(cols / group) * 2;
        EXPECT_EQ(l.row_bytes, static_cast<std::uint64_t>(cols * bits / 8));
        EXPECT_EQ(l.scales_offset, align_up(r * l.row_bytes, 256));
        EXPECT_EQ(l.biases_offset, align_up(l.scales_offset + section, 256));
        EXPECT_EQ(l.nbytes, align_up(l.biases_offset + section, 256));
        EXPECT_EQ(stored_nbytes(quantized_dtype(bits), {rows, cols}, {bits, group, Dtype::f16}), l.nbytes);
      }
    }
  }
  EXPECT_EQ(stored_nbytes(Dtype::bf16, {3, 5}, {}), 30u);
  EXPECT_THROW_WITH(quant_layout({384}, {}), ShapeError, "only 2-D tensors are quantized, not [384]");
}

TEST(Quant, ChecksParameters) {
  check_quant_params({2, 128, Dtype::f16}, 256, "t");
  EXPECT_THROW_WITH(check_quant_params({5, 64, Dtype::bf16}, 64, "tensor w"), ConfigError,
                    "tensor w: 5-bit quantization is not supported");
  EXPECT_THROW_WITH(check_quant_params({4, 48, Dtype::bf16}, 96, "tensor w"), ConfigError, "group size 48");
  EXPECT_THROW_WITH(check_quant_params({4, 64, Dtype::f32}, 64, "tensor w"), ConfigError, "bf16 or f16");
  EXPECT_THROW_WITH(check_quant_params({4, 64, Dtype::bf16}, 96, "tensor w"), ConfigError,
                    "rows of 96 elements do not split into groups of 64");
}

// Gaussian rows, one constant group, one group with an outlier, one with values of mixed scale.
std::vector<float> test_rows(std::int64_t rows, std::int64_t cols, int group) {
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::vector<float> x(static_cast<std::size_t>(rows * cols));
  for (float& v : x) v = normal(rng);
  std::fill_n(x.begin() + cols, group, 0.37f);               // row 1, group 0: constant
  std::fill_n(x.begin() + 2 * cols + group, group, -1.25f);  // row 2, group 1: constant, negative
  x[static_cast<std::size_t>(3 * cols + 5)] = 4.0f;          // row 3: an outlier
  x[static_cast<std::size_t>(4 * cols + cols - 1)] = -3.0f;
  return x;
}

float group_scale(const std::byte* block, const QuantLayout& l, const QuantParams& p, std::int64_t row,
                  std::int64_t g) {
  std::uint16_t bits = 0;
  std::memcpy(&bits, block + l.scales_offset + static_cast<std::uint64_t>(row * l.groups_per_row + g) * 2, 2);
  return p.scale_dtype == Dtype::bf16 ? bf16_to_f32(bits) : f16_to_f32(bits);
}

TEST(Quant, RoundTripWithinHalfAScale) {
  const std::int64_t rows = 6, cols = 384;
  for (int bits : kBits) {
    for (int group : kGroups) {
      for (Dtype scale_dtype : {Dtype::bf16, Dtype::f16}) {
        const QuantParams p{bits, group, scale_dtype};
        const QuantLayout l = quant_layout({rows, cols}, p);
        const std::vector<float> x = test_rows(rows, cols, group);
        std::vector<std::byte> block(l.nbytes, std::byte{0xAB});
        quantize(x.data(), l, p, block.data());
        std::vector<float> y(x.size());
        dequantize_rows(block.data(), l, p, 0, rows, y.data());
        for (std::int64_t r = 0; r < rows; ++r) {
          for (std::int64_t c = 0; c < cols; ++c) {
            const auto i = static_cast<std::size_t>(r * cols + c);
            const float scale = group_scale(block.data(), l, p, r, c / group);
            // Rounding of the products allows a relative 1e-6 above the exact bound.
            ASSERT_LE(std::fabs(y[i] - x[i]), scale / 2 * (1 + 1e-6f))
                << bits << "-bit, group " << group << ", " << dtype_name(scale_dtype) << ", row " << r
                << " col " << c;
          }
        }
        // A constant group the scale dtype represents comes back exactly.
        EXPECT_EQ(y[static_cast<std::size_t>(2 * cols + group)], -1.25f);
        // Padding between and after the sections is zero.
        const std::uint64_t q_end = static_cast<std::uint64_t>(rows) * l.row_bytes;
        for (std::uint64_t b = q_end; b < l.scales_offset; ++b) ASSERT_EQ(block[b], std::byte{0}) << b;
      }
    }
  }
}

TEST(Quant, SlicesOfRowsAndSeparateSectionsAgreeWithTheWhole) {
  const std::int64_t rows = 7, cols = 96;
  const QuantParams p{3, 32, Dtype::bf16};
  const QuantLayout l = quant_layout({rows, cols}, p);
  const std::vector<float> x = test_rows(rows, cols, 32);
  std::vector<std::byte> whole(l.nbytes);
  quantize(x.data(), l, p, whole.data());
  std::vector<std::byte> sliced(l.nbytes, std::byte{0});
  for (std::int64_t r = 0; r < rows; r += 3) {
    const std::int64_t n = std::min<std::int64_t>(3, rows - r);
    quantize_rows(x.data() + r * cols, l, p, r, n, sliced.data());
  }
  EXPECT_EQ(whole, sliced);

  // The sections copied apart (as an MLX checkpoint stores them) dequantize alike.
  const std::vector<std::byte> q(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(rows * 36));
  const std::vector<std::byte> scales(
      whole.begin() + static_cast<std::ptrdiff_t>(l.scales_offset),
      whole.begin() + static_cast<std::ptrdiff_t>(l.scales_offset + rows * 3 * 2));
  const std::vector<std::byte> biases(
      whole.begin() + static_cast<std::ptrdiff_t>(l.biases_offset),
      whole.begin() + static_cast<std::ptrdiff_t>(l.biases_offset + rows * 3 * 2));
  std::vector<float> a(static_cast<std::size_t>(3 * cols));
  std::vector<float> b(a.size());
  dequantize_rows(whole.data(), l, p, 2, 3, a.data());
  dequantize_rows(QuantSections{q.data(), scales.data(), biases.data()}, l, p, 2, 3, b.data());
  EXPECT_EQ(a, b);
  const QuantSections s = quant_sections(whole.data(), l);
  EXPECT_EQ(s.scales, whole.data() + 256);
  EXPECT_EQ(s.biases, whole.data() + l.biases_offset);
}

// q = 5, 3, 7, 0, 1, 6, 2, 4 at 3 bits: the bit stream 101 110 111 000 100 011 010 001 (each value
// LSB first) is the bytes 0xDD 0x11 0x8B. Four repeats fill a row of 32: three MLX words
// 0xDD8B11DD, 0x11DD8B11, 0x8B11DD8B, element 10 straddling the first two.
const std::vector<std::byte> kThreeBitRow =
    bytes_of({0xDD, 0x11, 0x8B, 0xDD, 0x11, 0x8B, 0xDD, 0x11, 0x8B, 0xDD, 0x11, 0x8B});
constexpr std::uint32_t kThreeBitValues[] = {5, 3, 7, 0, 1, 6, 2, 4};

TEST(Quant, UnpacksAHandPacked3BitRow) {
  for (std::int64_t col = 0; col < 32; ++col) {
    EXPECT_EQ(unpack_q(kThreeBitRow.data(), col, 3), kThreeBitValues[col % 8]) << col;
  }
  const std::uint32_t words[3] = {0xDD8B11DDu, 0x11DD8B11u, 0x8B11DD8Bu};
  EXPECT_EQ(std::memcmp(words, kThreeBitRow.data(), sizeof words), 0);  // little-endian words

  // Values that are their own q (bias 0, scale 1) quantize to exactly these bytes.
  std::vector<float> row(32);
  for (std::size_t c = 0; c < 32; ++c) row[c] = static_cast<float>(kThreeBitValues[c % 8]);
  const QuantParams p{3, 32, Dtype::bf16};
  const QuantLayout l = quant_layout({1, 32}, p);
  std::vector<std::byte> block(l.nbytes);
  quantize(row.data(), l, p, block.data());
  EXPECT_TRUE(std::equal(kThreeBitRow.begin(), kThreeBitRow.end(), block.begin()));
  EXPECT_EQ(group_scale(block.data(), l, p, 0, 0), 1.0f);
}

TEST(Quant, UnpacksOtherWidths) {
  const std::uint32_t four = 0x76543210u;  // MLX 4-bit: element j in bits 4j..4j+3 of the word
  for (std::int64_t col = 0; col < 8; ++col) {
    EXPECT_EQ(unpack_q(reinterpret_cast<const std::byte*>(&four), col, 4), static_cast<std::uint32_t>(col));
  }
  const std::vector<std::byte> two = bytes_of({0xE4, 0x1B});  // 0,1,2,3 then 3,2,1,0
  for (std::int64_t col = 0; col < 8; ++col) {
    EXPECT_EQ(unpack_q(two.data(), col, 2), static_cast<std::uint32_t>(col < 4 ? col : 7 - col));
  }
  const std::vector<std::byte> eight = bytes_of({0x00, 0x7F, 0xFF});
  EXPECT_EQ(unpack_q(eight.data(), 1, 8), 0x7Fu);
  EXPECT_EQ(unpack_q(eight.data(), 2, 8), 0xFFu);
}

}  // namespace
}  // namespace moeflux::format
