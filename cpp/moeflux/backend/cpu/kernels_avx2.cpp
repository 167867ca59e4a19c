// The AVX2 + FMA + F16C row kernels, compiled with target attributes and chosen at run time
// (simd.h). Each block of 32 q values unpacks into 4 vectors of 8 floats in a bit-width-specific
// lane order; x is permuted once per call to match, so no unpacked vector needs shuffling.
#include "moeflux/backend/cpu/weight.h"
#include "moeflux/util/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include <cstring>

#include "moeflux/backend/cpu/quant_rows.h"

#define MF_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace moeflux::backend::cpu {
namespace {

// The element of a 32-block that lane l of unpacked vector v holds (see unpack32).
constexpr int block_source(int bits, int v, int l) {
  switch (bits) {
    case 4: return 16 * (v / 2) + 2 * l + v % 2;  // low then high nibbles of 8 bytes
    case 2: return 4 * l + v;                     // the 4 crumbs of each of 8 bytes
    case 3: return l < 4 ? 8 * l + v : 8 * (l - 4) + 4 + v;  // 24-bit words, halves 12 bits apart
    default: return 8 * v + l;                    // 8-bit: natural order
  }
}

// 8 bytes, one per 32-bit lane.
MF_AVX2 inline __m256i load8(const std::byte* at) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(at)));
}

template <int Bits>
MF_AVX2 inline void unpack32(const std::byte* p, __m256 q[4]) {
  if constexpr (Bits == 8) {
    for (int v = 0; v < 4; ++v) q[v] = _mm256_cvtepi32_ps(load8(p + 8 * v));
  } else if constexpr (Bits == 4) {
    const __m256i nibble = _mm256_set1_epi32(0xf);
    for (int h = 0; h < 2; ++h) {
      const __m256i b = load8(p + 8 * h);
      q[2 * h] = _mm256_cvtepi32_ps(_mm256_and_si256(b, nibble));
      q[2 * h + 1] = _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4));
    }
  } else if constexpr (Bits == 2) {
    const __m256i crumb = _mm256_set1_epi32(3);
    const __m256i b = load8(p);
    q[0] = _mm256_cvtepi32_ps(_mm256_and_si256(b, crumb));
    q[1] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(b, 2), crumb));
    q[2] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(b, 4), crumb));
    q[3] = _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 6));
  } else {
    static_assert(Bits == 3);
    // 12 bytes exactly (no read past the block): lane i of each half gets bytes [3i, 3i + 3).
    std::int32_t tail;
    std::memcpy(&tail, p + 8, sizeof tail);
    const __m128i bytes = _mm_insert_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)), tail, 2);
    const __m256i spread = _mm256_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1,  //
                                            0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1);
    const __m256i words = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(bytes), spread);
    const __m256i three = _mm256_set1_epi32(7);
    for (int k = 0; k < 4; ++k) {
      const __m256i shift = _mm256_setr_epi32(3 * k, 3 * k, 3 * k, 3 * k, 3 * k + 12, 3 * k + 12,
                                              3 * k + 12, 3 * k + 12);
      q[k] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(words, shift), three));
    }
  }
}

MF_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

MF_AVX2 inline float half_to_float(const std::byte* p, Dtype dtype) {
  std::uint16_t bits;
  std::memcpy(&bits, p, sizeof bits);
  if (dtype == Dtype::f16) return _cvtsh_ss(bits);
  const std::uint32_t wide = std::uint32_t{bits} << 16;
  float f;
  std::memcpy(&f, &wide, sizeof f);
  return f;
}

// 8 consecutive 16-bit floats as float32.
MF_AVX2 inline __m256 load8_half(const std::byte* p, Dtype dtype) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  if (dtype == Dtype::f16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// Accumulators per token: enough independent FMA chains to hide their latency.
template <int T>
constexpr int kChains = T == 1 ? 4 : 2;

template <int Bits, int T>
MF_AVX2 void matvec_quantized(const PreparedX& x, const WeightRef& w, std::int64_t first,
                              std::int64_t last, float* y, std::int64_t ldy) {
  constexpr int A = kChains<T>;
  const std::int64_t K = x.K, groups = w.layout.groups_per_row;
  const int blocks = w.quant.group_size / 32;
  const Dtype sd = w.quant.scale_dtype;
  for (std::int64_t r = first; r < last; ++r) {
    const std::byte* qr = q_row(w, r);
    const auto at = static_cast<std::uint64_t>(r * groups) * 2;
    const std::byte* scales = w.data + w.layout.scales_offset + at;
    const std::byte* biases = w.data + w.layout.biases_offset + at;
    __m256 acc[T];
    for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
    for (std::int64_t g = 0; g < groups; ++g) {
      __m256 qd[T][A];
      for (int t = 0; t < T; ++t) {
        for (int a = 0; a < A; ++a) qd[t][a] = _mm256_setzero_ps();
      }
      for (int b = 0; b < blocks; ++b) {
        const std::int64_t block = g * blocks + b;
        __m256 q[4];
        unpack32<Bits>(qr + block * 4 * Bits, q);
        const float* xb = x.x + block * 32;
        for (int t = 0; t < T; ++t) {
          for (int v = 0; v < 4; ++v) {
            qd[t][v % A] = _mm256_fmadd_ps(q[v], _mm256_loadu_ps(xb + t * K + 8 * v), qd[t][v % A]);
          }
        }
      }
      const __m256 s = _mm256_set1_ps(half_to_float(scales + g * 2, sd));
      for (int t = 0; t < T; ++t) {
        __m256 sum = qd[t][0];
        for (int a = 1; a < A; ++a) sum = _mm256_add_ps(sum, qd[t][a]);
        acc[t] = _mm256_fmadd_ps(sum, s, acc[t]);
      }
    }
    // The bias term: sum over groups of bias * sum(x of the group), 8 groups at a time.
    std::int64_t g = 0;
    for (; g + 8 <= groups; g += 8) {
      const __m256 b = load8_half(biases + g * 2, sd);
      for (int t = 0; t < T; ++t) {
        acc[t] = _mm256_fmadd_ps(b, _mm256_loadu_ps(x.xsum + t * groups + g), acc[t]);
      }
    }
    for (int t = 0; t < T; ++t) {
      float tail = 0.0f;
      for (std::int64_t h = g; h < groups; ++h) {
        tail += half_to_float(biases + h * 2, sd) * x.xsum[t * groups + h];
      }
      y[t * ldy + r] = hsum(acc[t]) + tail;
    }
  }
}

template <int T>
MF_AVX2 void matvec_half(const PreparedX& x, const WeightRef& w, std::int64_t first, std::int64_t last,
                         float* y, std::int64_t ldy) {
  constexpr int A = kChains<T>;
  const std::int64_t K = w.cols;
  const Dtype dtype = w.dtype;
  for (std::int64_t r = first; r < last; ++r) {
    const std::byte* wr = w.data + r * K * 2;
    __m256 acc[T][A];
    for (int t = 0; t < T; ++t) {
      for (int a = 0; a < A; ++a) acc[t][a] = _mm256_setzero_ps();
    }
    std::int64_t i = 0;
    for (; i + 32 <= K; i += 32) {
      for (int v = 0; v < 4; ++v) {
        const __m256 wv = load8_half(wr + (i + 8 * v) * 2, dtype);
        for (int t = 0; t < T; ++t) {
          acc[t][v % A] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x.x + t * K + i + 8 * v), acc[t][v % A]);
        }
      }
    }
    for (; i + 8 <= K; i += 8) {
      const __m256 wv = load8_half(wr + i * 2, dtype);
      for (int t = 0; t < T; ++t) {
        acc[t][0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x.x + t * K + i), acc[t][0]);
      }
    }
    for (int t = 0; t < T; ++t) {
      __m256 sum = acc[t][0];
      for (int a = 1; a < A; ++a) sum = _mm256_add_ps(sum, acc[t][a]);
      float tail = 0.0f;
      for (std::int64_t j = i; j < K; ++j) tail += half_to_float(wr + j * 2, dtype) * x.x[t * K + j];
      y[t * ldy + r] = hsum(sum) + tail;
    }
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

void matvec_rows(const PreparedX& x, const WeightRef& w, std::int64_t first, std::int64_t last, float* y,
                 std::int64_t ldy) {
  switch (x.T) {
    case 1: return matvec_t<1>(x, w, first, last, y, ldy);
    case 2: return matvec_t<2>(x, w, first, last, y, ldy);
    case 3: return matvec_t<3>(x, w, first, last, y, ldy);
    case 4: return matvec_t<4>(x, w, first, last, y, ldy);
    default: MF_ASSERT(false, "matvec of ", x.T, " rows");
  }
}

template <int Bits>
MF_AVX2 void dequantize_quantized(const WeightRef& w, std::int64_t first, std::int64_t last, float* tile) {
  const std::int64_t K = w.cols, groups = w.layout.groups_per_row;
  const int blocks = w.quant.group_size / 32;
  const Dtype sd = w.quant.scale_dtype;
  for (std::int64_t r = first; r < last; ++r) {
    const std::byte* qr = q_row(w, r);
    const auto at = static_cast<std::uint64_t>(r * groups) * 2;
    const std::byte* scales = w.data + w.layout.scales_offset + at;
    const std::byte* biases = w.data + w.layout.biases_offset + at;
    float* out = tile + (r - first) * K;
    for (std::int64_t g = 0; g < groups; ++g) {
      const __m256 s = _mm256_set1_ps(half_to_float(scales + g * 2, sd));
      const __m256 b = _mm256_set1_ps(half_to_float(biases + g * 2, sd));
      for (int k = 0; k < blocks; ++k) {
        const std::int64_t block = g * blocks + k;
        __m256 q[4];
        unpack32<Bits>(qr + block * 4 * Bits, q);
        for (int v = 0; v < 4; ++v) _mm256_storeu_ps(out + block * 32 + 8 * v, _mm256_fmadd_ps(q[v], s, b));
      }
    }
  }
}

MF_AVX2 void dequantize_half(const WeightRef& w, std::int64_t first, std::int64_t last, float* tile) {
  const std::int64_t K = w.cols;
  for (std::int64_t r = first; r < last; ++r) {
    const std::byte* wr = w.data + r * K * 2;
    float* out = tile + (r - first) * K;
    std::int64_t i = 0;
    for (; i + 8 <= K; i += 8) _mm256_storeu_ps(out + i, load8_half(wr + i * 2, w.dtype));
    for (; i < K; ++i) out[i] = half_to_float(wr + i * 2, w.dtype);
  }
}

void dequantize_rows(const WeightRef& w, std::int64_t first, std::int64_t last, float* tile) {
  switch (w.quantized() ? w.quant.bits : 0) {
    case 8: return dequantize_quantized<8>(w, first, last, tile);
    case 4: return dequantize_quantized<4>(w, first, last, tile);
    case 3: return dequantize_quantized<3>(w, first, last, tile);
    case 2: return dequantize_quantized<2>(w, first, last, tile);
    default: return dequantize_half(w, first, last, tile);
  }
}

bool permute(int bits, const float* x, std::int64_t T, std::int64_t K, float* out) {
  if (bits != 4 && bits != 3 && bits != 2) return false;
  int source[32];
  for (int i = 0; i < 32; ++i) source[i] = block_source(bits, i / 8, i % 8);
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t b = 0; b < K; b += 32) {
      const float* in = x + t * K + b;
      float* o = out + t * K + b;
      for (int i = 0; i < 32; ++i) o[i] = in[source[i]];
    }
  }
  return true;
}

}  // namespace

RowKernels avx2_kernels() { return {permute, matvec_rows, dequantize_rows}; }

}  // namespace moeflux::backend::cpu

#else  // not x86: best_simd() never picks these

namespace moeflux::backend::cpu {
RowKernels avx2_kernels() { return portable_kernels(); }
}  // namespace moeflux::backend::cpu

#endif
