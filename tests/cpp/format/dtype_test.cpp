// dtype.h: the 16-bit float conversions, checked on every 16-bit pattern, on rounding ties,
// subnormals, Inf and NaN, and against a nearest-value search on random floats; dtype names.
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "fixtures.h"
#include "moeflux/format/dtype.h"

namespace moeflux::format {
namespace {

using Decode = float (*)(std::uint16_t);

// Reference rounding of |x| by search over the ordered positive patterns [0, inf_pattern):
// the nearest value, ties to the even pattern, Inf from halfway past the largest finite value.
std::uint16_t reference_round(float x, Decode decode, std::uint16_t inf_pattern, double inf_value) {
  const std::uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const double a = std::fabs(static_cast<double>(x));
  std::uint32_t lo = 0;
  std::uint32_t hi = inf_pattern;  // invariant: value(lo) <= a < value(hi)
  while (hi - lo > 1) {
    const std::uint32_t mid = (lo + hi) / 2;
    (static_cast<double>(decode(static_cast<std::uint16_t>(mid))) <= a ? lo : hi) = mid;
  }
  const double below = static_cast<double>(decode(static_cast<std::uint16_t>(lo)));
  const double above =
      hi == inf_pattern ? inf_value : static_cast<double>(decode(static_cast<std::uint16_t>(hi)));
  const bool up = (a - below > above - a) || (a - below == above - a && (lo & 1u) != 0);
  return static_cast<std::uint16_t>(sign | (up ? hi : lo));
}

std::uint16_t reference_f16(float x) { return reference_round(x, f16_to_f32, 0x7c00, 65536.0); }
std::uint16_t reference_bf16(float x) {
  return reference_round(x, bf16_to_f32, 0x7f80, std::ldexp(1.0, 128));
}

float bits_to_float(std::uint32_t bits) { return std::bit_cast<float>(bits); }

TEST(Dtype, Bf16EveryPatternRoundTrips) {
  for (std::uint32_t b = 0; b <= 0xffff; ++b) {
    const float f = bf16_to_f32(static_cast<std::uint16_t>(b));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f)))) << b;
    } else {
      ASSERT_EQ(f32_to_bf16(f), b);
    }
  }
}

TEST(Dtype, F16EveryPatternRoundTrips) {
  for (std::uint32_t b = 0; b <= 0xffff; ++b) {
    const float f = f16_to_f32(static_cast<std::uint16_t>(b));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f)))) << b;
    } else {
      ASSERT_EQ(f32_to_f16(f), b);
    }
  }
}

TEST(Dtype, F16DecodesKnownValues) {
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x0400), std::ldexp(1.0f, -14));
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_f32(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(f16_to_f32(0x8000), 0.0f);
  EXPECT_TRUE(std::signbit(f16_to_f32(0x8000)));
  EXPECT_EQ(f16_to_f32(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(f16_to_f32(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7e00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7c01)));
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_f32(0xff80), -std::numeric_limits<float>::infinity());
}

TEST(Dtype, F16RoundsToNearestEven) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // halfway to 2^16 rounds to even: Inf
  EXPECT_EQ(f32_to_f16(-1e6f), 0xfc00);
  EXPECT_EQ(f32_to_f16(inf), 0x7c00);
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie, even below
  EXPECT_EQ(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie, even above
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);             // tie between 0 and 2^-24
  EXPECT_EQ(f32_to_f16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(f32_to_f16(3 * std::ldexp(1.0f, -25)), 0x0002);                      // subnormal tie to even
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -25)), 0x0400);  // up to the first normal
  EXPECT_EQ(f32_to_f16(1e-10f), 0x0000);
  EXPECT_EQ(f32_to_f16(-1e-10f), 0x8000);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::denorm_min()), 0x0000);
  const std::uint16_t nan = f32_to_f16(bits_to_float(0x7f800001u));  // payload only in the low bits
  EXPECT_EQ(nan & 0x7c00, 0x7c00);
  EXPECT_NE(nan & 0x03ff, 0);
  EXPECT_EQ(f32_to_f16(bits_to_float(0xffc00000u)) & 0x8000, 0x8000);  // NaN keeps its sign
}

TEST(Dtype, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(bits_to_float(0x7f800001u)))));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(bits_to_float(0xff800001u)))));
  EXPECT_EQ(f32_to_bf16(bits_to_float(0x00010000u)), 0x0001);  // f32 subnormals stay exact
  EXPECT_EQ(f32_to_bf16(bits_to_float(0x00008000u)), 0x0000);  // and tie to even
  EXPECT_EQ(f32_to_bf16(bits_to_float(0x00018000u)), 0x0002);
}

TEST(Dtype, RandomFloatsRoundToTheNearestValue) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<std::uint32_t> any_bits;
  std::uniform_int_distribution<std::uint32_t> f16_exponent(95, 145);  // around the f16 range
  for (int i = 0; i < 200000; ++i) {
    std::uint32_t bits = any_bits(rng);
    if (i % 2 == 1) bits = (bits & 0x807fffffu) | (f16_exponent(rng) << 23);
    const float x = bits_to_float(bits);
    if (std::isnan(x)) continue;
    ASSERT_EQ(f32_to_f16(x), reference_f16(x)) << "x bits " << std::hex << bits;
    ASSERT_EQ(f32_to_bf16(x), reference_bf16(x)) << "x bits " << std::hex << bits;
  }
}

TEST(Dtype, ArraysConvertFromUnalignedBuffers) {
  const std::vector<float> values = {1.5f, -2.25f, 65504.0f, 1e-7f, 0.0f, -3.0e38f, 7.0f};
  for (Dtype dtype : {Dtype::f32, Dtype::f16, Dtype::bf16}) {
    std::vector<unsigned char> storage(1 + values.size() * dtype_size(dtype) + 1, 0xee);
    from_f32(values.data(), dtype, values.size(), storage.data() + 1);  // odd address on purpose
    EXPECT_EQ(storage.front(), 0xee);
    EXPECT_EQ(storage.back(), 0xee);
    std::vector<float> back(values.size());
    to_f32(storage.data() + 1, dtype, values.size(), back.data());
    for (std::size_t i = 0; i < values.size(); ++i) {
      float expected = values[i];
      if (dtype == Dtype::f16) expected = f16_to_f32(f32_to_f16(values[i]));
      if (dtype == Dtype::bf16) expected = bf16_to_f32(f32_to_bf16(values[i]));
      EXPECT_EQ(back[i], expected) << dtype_name(dtype) << " element " << i;
    }
  }
}

TEST(Dtype, NamesAndSizes) {
  for (Dtype dtype : {Dtype::f32, Dtype::f16, Dtype::bf16, Dtype::q8, Dtype::q4, Dtype::q3, Dtype::q2}) {
    EXPECT_EQ(parse_dtype(dtype_name(dtype), "test"), dtype);
    EXPECT_EQ(is_quantized(dtype), quant_bits(dtype) != 0);
  }
  for (int bits : {8, 4, 3, 2}) EXPECT_EQ(quant_bits(quantized_dtype(bits)), bits);
  EXPECT_EQ(quant_bits(Dtype::bf16), 0);
  EXPECT_THROW_WITH(quantized_dtype(5), ConfigError, "5-bit quantization is not supported");
  EXPECT_EQ(dtype_size(Dtype::f32), 4u);
  EXPECT_EQ(dtype_size(Dtype::f16), 2u);
  EXPECT_EQ(dtype_size(Dtype::bf16), 2u);
  EXPECT_EQ(dtype_from_safetensors("BF16", "t"), Dtype::bf16);
  EXPECT_EQ(dtype_from_safetensors("F16", "t"), Dtype::f16);
  EXPECT_EQ(dtype_from_safetensors("F32", "t"), Dtype::f32);
  EXPECT_THROW_WITH(parse_dtype("q5", "field x of y.json"), FormatError, "\"q5\" in field x of y.json");
  EXPECT_THROW_WITH(dtype_from_safetensors("I64", "tensor pos"), Unsupported, "tensor pos has dtype I64");
  EXPECT_THROW_WITH(dtype_from_safetensors("F8_E4M3", "tensor w"), Unsupported, "F8_E4M3");
}

}  // namespace
}  // namespace moeflux::format
