// The portable row kernels: plain C++ for processors without AVX2 (and the reference the AVX2
// kernels are tested beside). Natural column order; per group, q . x over 8 lanes, then
// y += scale * (q . x) + bias * sum(x of the group).
#include <algorithm>
#include <cstring>

#include "moeflux/backend/cpu/quant_rows.h"
#include "moeflux/backend/cpu/weight.h"

namespace moeflux::backend::cpu {
namespace {

template <int Lanes>
float lane_sum(float (&acc)[Lanes]) {
  for (int width = Lanes / 2; width > 0; width /= 2) {
    for (int l = 0; l < width; ++l) acc[l] += acc[l + width];
  }
  return acc[0];
}

template <int Bits, int T>
void matvec_quantized(const PreparedX& x, const WeightRef& w, std::int64_t first, std::int64_t last,
                      float* y, std::int64_t ldy) {
  const int G = w.quant.group_size;
  const std::int64_t groups = w.layout.groups_per_row;
  for (std::int64_t r = first; r < last; ++r) {
    const std::byte* qr = q_row(w, r);
    float row[T] = {};
    for (std::int64_t g = 0; g < groups; ++g) {
      float lanes[T][8] = {};
      for (std::int64_t c = g * G / 8; c < (g + 1) * G / 8; ++c) {
        float q[8];
        unpack8<Bits>(qr, c, q);
        for (int t = 0; t < T; ++t) {
          const float* xt = x.x + t * x.K + c * 8;
          for (int l = 0; l < 8; ++l) lanes[t][l] += q[l] * xt[l];
        }
      }
      const float s = group_scale(w, r, g), b = group_bias(w, r, g);
      for (int t = 0; t < T; ++t) {
        row[t] += s * lane_sum(lanes[t]);
        row[t] += b * x.xsum[t * groups + g];
      }
    }
    for (int t = 0; t < T; ++t) y[t * ldy + r] = row[t];
  }
}

// f16 / bf16 rows: 16 lanes, as kernels.h's dot.
template <int T>
void matvec_half(const PreparedX& x, const WeightRef& w, std::int64_t first, std::int64_t last,
                 float* y, std::int64_t ldy) {
  constexpr int kLanes = 16;
  const std::int64_t K = w.cols;
  for (std::int64_t r = first; r < last; ++r) {
    const std::byte* wr = w.data + r * K * 2;
    float acc[T][kLanes] = {};
    for (std::int64_t i = 0; i < K; i += kLanes) {
      const int n = static_cast<int>(std::min<std::int64_t>(kLanes, K - i));
      std::uint16_t bits[kLanes];
      std::memcpy(bits, wr + i * 2, static_cast<std::size_t>(n) * 2);
      float wv[kLanes];
      for (int l = 0; l < n; ++l) wv[l] = half_bits_to_float(bits[l], w.dtype);
      for (int t = 0; t < T; ++t) {
        const float* xt = x.x + t * K + i;
        for (int l = 0; l < n; ++l) acc[t][l] += wv[l] * xt[l];
      }
    }
    for (int t = 0; t < T; ++t) y[t * ldy + r] = lane_sum(acc[t]);
  }
}

template <int T>
void matvec_t(const PreparedX& x, const WeightRef& w, std::int64_t first, std::int64_t last, float* y,
              std::int64_t ldy) {
  switch (w.quantized() ? w.quant.bits : 0) {
    case 8: return matvec_quantized<8, T>(x, w, first, last, y, ldy);
    case 4: return matvec_quantized<4, T>(x, w, first, last, y, ldy);
    case 3: return matvec_quantized<3, T>(x, w, first, last, y, ldy);
    case 2: return matvec_quantized<2, T>(x, w, first, last, y, ldy);
    default: return matvec_half<T>(x, w, first, last, y, ldy);
  }
}

bool permute(int, const float*, std::int64_t, std::int64_t, float*) { return false; }

void matvec_rows(const PreparedX& x, const WeightRef& w, std::int64_t first, std::int64_t last,
                 float* y, std::int64_t ldy) {
  switch (x.T) {
    case 1: return matvec_t<1>(x, w, first, last, y, ldy);
    case 2: return matvec_t<2>(x, w, first, last, y, ldy);
    case 3: return matvec_t<3>(x, w, first, last, y, ldy);
    default: return matvec_t<4>(x, w, first, last, y, ldy);
  }
}

void dequantize_rows(const WeightRef& w, std::int64_t first, std::int64_t last, float* tile) {
  widen_rows(w, first, last - first, tile);
}

}  // namespace

RowKernels portable_kernels() { return {permute, matvec_rows, dequantize_rows}; }

}  // namespace moeflux::backend::cpu
