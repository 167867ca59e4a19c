// Element types and the exact 16-bit float conversions (round to nearest even, NaN kept NaN),
// written as plain integer code so they need no F16C or other CPU feature.
#include "moeflux/format/dtype.h"

#include <bit>
#include <cstring>

#include "moeflux/util/error.h"

namespace moeflux::format {

bool is_quantized(Dtype dtype) { return quant_bits(dtype) != 0; }

int quant_bits(Dtype dtype) {
  switch (dtype) {
    case Dtype::q8: return 8;
    case Dtype::q4: return 4;
    case Dtype::q3: return 3;
    case Dtype::q2: return 2;
    default: return 0;
  }
}

Dtype quantized_dtype(int bits) {
  switch (bits) {
    case 8: return Dtype::q8;
    case 4: return Dtype::q4;
    case 3: return Dtype::q3;
    case 2: return Dtype::q2;
    default: break;
  }
  throw ConfigError(util::concat("[quantize] ", bits, "-bit quantization is not supported; use 8, 4, 3 or 2 bits"));
}

std::size_t dtype_size(Dtype dtype) {
  switch (dtype) {
    case Dtype::f32: return 4;
    case Dtype::f16: return 2;
    case Dtype::bf16: return 2;
    case Dtype::q8:
    case Dtype::q4:
    case Dtype::q3:
    case Dtype::q2: break;
  }
  throw InternalError(util::concat("[dtype_size] unknown Dtype value ", static_cast<int>(dtype),
                                   " (this is a bug in moeflux; please report it)"));
}

std::string_view dtype_name(Dtype dtype) {
  switch (dtype) {
    case Dtype::f32: return "f32";
    case Dtype::f16: return "f16";
    case Dtype::bf16: return "bf16";
    case Dtype::q8: return "q8";
    case Dtype::q4: return "q4";
    case Dtype::q3: return "q3";
    case Dtype::q2: return "q2";
  }
  throw InternalError(util::concat("[dtype_name] unknown Dtype value ", static_cast<int>(dtype),
                                   " (this is a bug in moeflux; please report it)"));
}

Dtype parse_dtype(std::string_view name, std::string_view where) {
  if (name == "f32") return Dtype::f32;
  if (name == "f16") return Dtype::f16;
  if (name == "bf16") return Dtype::bf16;
  if (name == "q8") return Dtype::q8;
  if (name == "q4") return Dtype::q4;
  if (name == "q3") return Dtype::q3;
  if (name == "q2") return Dtype::q2;
  throw FormatError(util::concat("[parse_dtype] unknown dtype \"", name, "\" in ", where,
                                 "; this moeflux stores f32, f16, bf16, q8, q4, q3 and q2; re-convert the checkpoint "
                                 "with this version of moeflux"));
}

Dtype dtype_from_safetensors(std::string_view name, std::string_view where) {
  if (name == "F32") return Dtype::f32;
  if (name == "F16") return Dtype::f16;
  if (name == "BF16") return Dtype::bf16;
  throw Unsupported(util::concat("[read_checkpoint] ", where, " has dtype ", name,
                                 "; moeflux can store only F32, F16 and BF16 tensors (and U32 only as the "
                                 "packed weight of an MLX-quantized X.weight with X.scales and X.biases); "
                                 "convert the checkpoint to one of these (e.g. with transformers) first"));
}

float bf16_to_f32(std::uint16_t bits) { return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16); }

std::uint16_t f32_to_bf16(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {
    // Truncating could clear every payload bit and turn NaN into Inf; force the quiet bit.
    return static_cast<std::uint16_t>((bits >> 16) | 0x0040u);
  }
  const std::uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>((bits + rounding) >> 16);  // overflow carries into Inf
}

float f16_to_f32(std::uint16_t bits) {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  std::uint32_t exponent = (bits >> 10) & 0x1fu;
  std::uint32_t mantissa = bits & 0x3ffu;
  std::uint32_t out = 0;
  if (exponent == 0x1fu) {
    out = sign | 0x7f800000u | (mantissa << 13);  // Inf, or NaN with its payload
  } else if (exponent != 0) {
    out = sign | ((exponent + 112u) << 23) | (mantissa << 13);
  } else if (mantissa != 0) {
    // Subnormal: shift the mantissa up until its leading one becomes the implicit bit.
    exponent = 113u;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --exponent;
    }
    out = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
  } else {
    out = sign;
  }
  return std::bit_cast<float>(out);
}

namespace {
// Shifts `value` right by `shift` bits, rounding to nearest with ties to even.
std::uint32_t shift_round_even(std::uint32_t value, unsigned shift) {
  const std::uint32_t kept = value >> shift;
  const std::uint32_t rest = value & ((1u << shift) - 1u);
  const std::uint32_t half = 1u << (shift - 1u);
  return (rest > half || (rest == half && (kept & 1u) != 0)) ? kept + 1u : kept;
}
}  // namespace

std::uint16_t f32_to_f16(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  const std::uint32_t sign = (bits >> 16) & 0x8000u;
  const std::uint32_t exponent = (bits >> 23) & 0xffu;
  const std::uint32_t mantissa = bits & 0x7fffffu;
  std::uint32_t half = 0;
  if (exponent == 0xffu) {
    half = mantissa != 0 ? 0x7e00u | (mantissa >> 13) : 0x7c00u;  // quiet NaN keeps its top payload
  } else if (exponent >= 143u) {
    half = 0x7c00u;  // at least 2^16: beyond the largest half even before rounding
  } else if (exponent >= 113u) {
    // Normal half: rebias; a carry out of the mantissa correctly bumps the exponent (up to Inf).
    half = shift_round_even(((exponent - 112u) << 23) | mantissa, 13);
  } else if (exponent >= 102u) {
    // Subnormal half: units of 2^-24; the result may round up to the smallest normal.
    half = shift_round_even(mantissa | 0x800000u, 126u - exponent);
  }  // else: below 2^-25, rounds to zero
  return static_cast<std::uint16_t>(sign | half);
}

void to_f32(const void* src, Dtype dtype, std::size_t count, float* dst) {
  const auto* bytes = static_cast<const unsigned char*>(src);
  if (dtype == Dtype::f32) {
    std::memcpy(dst, bytes, count * sizeof(float));
    return;
  }
  for (std::size_t i = 0; i < count; ++i) {
    std::uint16_t bits = 0;
    std::memcpy(&bits, bytes + 2 * i, 2);  // sources may be unaligned (safetensors offsets)
    dst[i] = dtype == Dtype::f16 ? f16_to_f32(bits) : bf16_to_f32(bits);
  }
}

void from_f32(const float* src, Dtype dtype, std::size_t count, void* dst) {
  auto* bytes = static_cast<unsigned char*>(dst);
  if (dtype == Dtype::f32) {
    std::memcpy(bytes, src, count * sizeof(float));
    return;
  }
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint16_t bits = dtype == Dtype::f16 ? f32_to_f16(src[i]) : f32_to_bf16(src[i]);
    std::memcpy(bytes + 2 * i, &bits, 2);
  }
}

}  // namespace moeflux::format
