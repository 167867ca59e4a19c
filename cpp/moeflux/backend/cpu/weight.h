// WeightRef: a weight matrix [rows, cols] as the kernels read it: f32, f16, bf16 or quantized bytes
// (format/quant.h), from a resident tensor or from an expert block's view. The row kernels of each
// instruction set (portable, AVX2) are declared here too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "moeflux/backend/cpu/simd.h"
#include "moeflux/backend/tensor.h"
#include "moeflux/format/quant.h"

namespace moeflux::backend::cpu {

struct WeightRef {
  Dtype dtype = Dtype::f32;
  std::int64_t rows = 0, cols = 0;
  const std::byte* data = nullptr;  // the first element (quantized: the start of all three sections)
  format::QuantParams quant{};      // quantized only
  format::QuantLayout layout{};     // quantized only

  bool quantized() const { return format::is_quantized(dtype); }
};

// Checks a stored view (shape [rows, cols] or [n], byte count, quantization parameters) and
// describes it; `op` and `what` name the caller in the message.
WeightRef weight_ref(const format::TensorView& view, std::string_view op, std::string_view what);
// A resident weight or a float32 tensor of this backend: the last axis is cols, the rest rows.
WeightRef weight_ref(const Tensor& t, std::string_view op, std::string_view what);

// Exactly widened rows [first, first + count) in natural column order, as format's dequantizer
// computes them (q * scale, then + bias): out [count, cols].
void widen_rows(const WeightRef& w, std::int64_t first, std::int64_t count, float* out);

// x [T, K] prepared for one weight: columns permuted within blocks of 32 into the order the
// kernels unpack q values in (portable: natural order), and per-group sums of x for the bias term.
struct PreparedX {
  const float* x = nullptr;     // [T, K], permuted
  const float* xsum = nullptr;  // [T, K / group_size], quantized only
  std::int64_t T = 0, K = 0;
};

// The kernels of one instruction set. matvec_rows: y[t, r] = x[t] . w[r] for r in [first, last),
// T <= kMaxMatvecT, y row stride ldy. dequantize_rows: rows [first, last) into tile rows
// [0, last - first) of K floats, in the permuted column order. permute: writes x permuted for a
// weight of `bits` (0: 16-bit) and returns true, or returns false when that order is the natural one.
inline constexpr std::int64_t kMaxMatvecT = 4;
struct RowKernels {
  bool (*permute)(int bits, const float* x, std::int64_t T, std::int64_t K, float* out);
  void (*matvec_rows)(const PreparedX& x, const WeightRef& w, std::int64_t first, std::int64_t last,
                      float* y, std::int64_t ldy);
  void (*dequantize_rows)(const WeightRef& w, std::int64_t first, std::int64_t last, float* tile);
};

RowKernels portable_kernels();
RowKernels avx2_kernels();  // only valid where best_simd() is avx2
RowKernels kernels_for(Simd simd);

}  // namespace moeflux::backend::cpu
