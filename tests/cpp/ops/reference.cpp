// Double-precision reference loops. Error scales: for a sum, the sum of |terms|; for products of
// rounded float32 factors, the magnitudes that each factor's rounding error multiplies.
#include "reference.h"

#include <algorithm>
#include <cmath>

namespace moeflux::test {
namespace {

double d(float v) { return static_cast<double>(v); }
std::size_t at(std::int64_t i) { return static_cast<std::size_t>(i); }
double silu(double g) { return g / (1.0 + std::exp(-g)); }
double sigmoid(double g) { return 1.0 / (1.0 + std::exp(-g)); }

// A stored [rows, cols] block widened to float32.
std::vector<float> dequantize(const std::vector<std::byte>& bytes, format::Dtype dtype, std::int64_t rows,
                              std::int64_t cols, const format::QuantParams& quant) {
  std::vector<float> out(at(rows * cols));
  if (format::is_quantized(dtype)) {
    format::dequantize_rows(bytes.data(), format::quant_layout({rows, cols}, quant), quant, 0, rows, out.data());
  } else {
    format::to_f32(bytes.data(), dtype, out.size(), out.data());
  }
  return out;
}

}  // namespace

Reference rms_norm_ref(std::span<const float> x, std::span<const float> w, std::int64_t cols,
                       double eps, bool zero_centered) {
  Reference ref{std::vector<double>(x.size()), std::vector<double>(x.size())};
  const std::int64_t rows = static_cast<std::int64_t>(x.size()) / cols;
  for (std::int64_t r = 0; r < rows; ++r) {
    double sum_sq = 0.0;
    for (std::int64_t c = 0; c < cols; ++c) sum_sq += d(x[at(r * cols + c)]) * d(x[at(r * cols + c)]);
    const double inv_rms = 1.0 / std::sqrt(sum_sq / static_cast<double>(cols) + eps);
    for (std::int64_t c = 0; c < cols; ++c) {
      const double normed = d(x[at(r * cols + c)]) * inv_rms;
      const double factor = zero_centered ? 1.0 + d(w[at(c)]) : d(w[at(c)]);
      ref.value[at(r * cols + c)] = normed * factor;
      // float32 rounds (1 + w) absolutely, to about 1 ulp of 1.
      ref.scale[at(r * cols + c)] = std::abs(normed) * (std::abs(factor) + (zero_centered ? 1.0 : 0.0));
    }
  }
  return ref;
}

Reference rms_scale_ref(std::span<const float> x, std::span<const float> y, std::int64_t T, double eps) {
  Reference ref{std::vector<double>(y.size()), std::vector<double>(y.size())};
  const std::int64_t H = static_cast<std::int64_t>(x.size()) / T, C = static_cast<std::int64_t>(y.size()) / T;
  for (std::int64_t t = 0; t < T; ++t) {
    double sum_sq = 0.0;
    for (std::int64_t h = 0; h < H; ++h) sum_sq += d(x[at(t * H + h)]) * d(x[at(t * H + h)]);
    const double inv_rms = 1.0 / std::sqrt(sum_sq / static_cast<double>(H) + eps);
    for (std::int64_t c = 0; c < C; ++c) {
      ref.value[at(t * C + c)] = d(y[at(t * C + c)]) * inv_rms;
      ref.scale[at(t * C + c)] = std::abs(ref.value[at(t * C + c)]);
    }
  }
  return ref;
}

Reference matmul_ref(std::span<const float> x, std::span<const float> w, std::int64_t T,
                     std::int64_t K, std::int64_t N) {
  Reference ref{std::vector<double>(at(T * N)), std::vector<double>(at(T * N))};
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t n = 0; n < N; ++n) {
      double sum = 0.0, abs_sum = 0.0;
      for (std::int64_t i = 0; i < K; ++i) {
        const double term = d(x[at(t * K + i)]) * d(w[at(n * K + i)]);
        sum += term;
        abs_sum += std::abs(term);
      }
      ref.value[at(t * N + n)] = sum;
      ref.scale[at(t * N + n)] = abs_sum;
    }
  }
  return ref;
}

Reference rope_ref(std::span<const float> x, std::span<const std::int32_t> positions,
                   std::int64_t heads, std::int64_t D, int rotary_dim,
                   std::span<const float> inv_freq, float attention_scaling) {
  Reference ref{std::vector<double>(x.size()), std::vector<double>(x.size(), 0.0)};
  const std::int64_t half = rotary_dim / 2;
  for (std::size_t t = 0; t < positions.size(); ++t) {
    for (std::int64_t h = 0; h < heads; ++h) {
      const std::int64_t base = (static_cast<std::int64_t>(t) * heads + h) * D;
      for (std::int64_t c = 0; c < D; ++c) ref.value[at(base + c)] = d(x[at(base + c)]);  // exact pass
      for (std::int64_t j = 0; j < half; ++j) {
        // The angle is float32 by contract (transformers computes it so); the rest is exact.
        const float angle = static_cast<float>(positions[t]) * inv_freq[at(j)];
        const double c = std::cos(d(angle)) * d(attention_scaling);
        const double s = std::sin(d(angle)) * d(attention_scaling);
        const double a = d(x[at(base + j)]);
        const double b = d(x[at(base + j + half)]);
        ref.value[at(base + j)] = a * c - b * s;
        ref.value[at(base + j + half)] = b * c + a * s;
        const double magnitude = (std::abs(a) + std::abs(b)) * std::abs(d(attention_scaling));
        ref.scale[at(base + j)] = magnitude;
        ref.scale[at(base + j + half)] = magnitude;
      }
    }
  }
  return ref;
}

Reference attention_ref(std::span<const float> q, std::span<const float> k,
                        std::span<const float> v, const AttentionCase& c) {
  Reference ref{std::vector<double>(at(c.T * c.nh * c.Dv)), std::vector<double>(at(c.T * c.nh * c.Dv))};
  const std::int64_t group = c.nh / c.nkv;
  for (std::int64_t t = 0; t < c.T; ++t) {
    const std::int64_t pos = c.n_past + t;
    for (std::int64_t h = 0; h < c.nh; ++h) {
      const std::int64_t kvh = h / group;
      std::vector<double> p(at(pos + 1), 0.0);
      std::vector<bool> visible(at(pos + 1), false);
      double max_s = -INFINITY;
      for (std::int64_t j = 0; j <= pos; ++j) {
        if (c.window > 0 && j <= pos - c.window) continue;
        double s = 0.0;
        for (std::int64_t i = 0; i < c.D; ++i) {
          s += d(q[at((t * c.nh + h) * c.D + i)]) * d(k[at((j * c.nkv + kvh) * c.D + i)]);
        }
        p[at(j)] = s * d(c.scale);
        visible[at(j)] = true;
        max_s = std::max(max_s, p[at(j)]);
      }
      double sum = 0.0;
      for (std::int64_t j = 0; j <= pos; ++j) {
        p[at(j)] = visible[at(j)] ? std::exp(p[at(j)] - max_s) : 0.0;
        sum += p[at(j)];
      }
      for (std::int64_t e = 0; e < c.Dv; ++e) {
        double out = 0.0, magnitude = 0.0;
        for (std::int64_t j = 0; j <= pos; ++j) {
          if (!visible[at(j)]) continue;
          const double term = p[at(j)] / sum * d(v[at((j * c.nkv + kvh) * c.Dv + e)]);
          out += term;
          magnitude += std::abs(term);
        }
        ref.value[at((t * c.nh + h) * c.Dv + e)] = out;
        ref.scale[at((t * c.nh + h) * c.Dv + e)] = magnitude;
      }
    }
  }
  return ref;
}

Reference swiglu_ref(std::span<const float> gate, std::span<const float> up) {
  Reference ref{std::vector<double>(gate.size()), std::vector<double>(gate.size())};
  for (std::size_t i = 0; i < gate.size(); ++i) {
    ref.value[i] = silu(d(gate[i])) * d(up[i]);
    ref.scale[i] = std::abs(ref.value[i]);
  }
  return ref;
}

Reference add_ref(std::span<const float> a, std::span<const float> b) {
  Reference ref{std::vector<double>(a.size()), std::vector<double>(a.size())};
  for (std::size_t i = 0; i < a.size(); ++i) {
    ref.value[i] = d(a[i]) + d(b[i]);
    ref.scale[i] = std::abs(ref.value[i]);  // one rounding of the exact sum
  }
  return ref;
}

Reference sigmoid_mul_ref(std::span<const float> gate, std::span<const float> x, std::int64_t T) {
  Reference ref{std::vector<double>(x.size()), std::vector<double>(x.size())};
  const std::int64_t G = static_cast<std::int64_t>(gate.size()) / T;
  const std::int64_t C = static_cast<std::int64_t>(x.size()) / T;
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t c = 0; c < C; ++c) {
      const double value = sigmoid(d(gate[at(t * G + c / (C / G))])) * d(x[at(t * C + c)]);
      ref.value[at(t * C + c)] = value;
      ref.scale[at(t * C + c)] = std::abs(value);
    }
  }
  return ref;
}

Reference moe_ref(std::span<const float> x, std::int64_t H, int k,
                  std::span<const std::int32_t> ids, std::span<const float> weights,
                  std::span<const StoredExpert> experts) {
  const std::int64_t T = static_cast<std::int64_t>(x.size()) / H;
  Reference ref{std::vector<double>(x.size(), 0.0), std::vector<double>(x.size(), 0.0)};
  std::vector<std::vector<float>> gates, ups, downs;
  for (const StoredExpert& e : experts) {
    gates.push_back(dequantize(e.gate, e.dtype, e.I, H, e.quant));
    ups.push_back(dequantize(e.up, e.dtype, e.I, H, e.quant));
    downs.push_back(dequantize(e.down, e.dtype, H, e.I, e.quant));
  }
  for (std::int64_t t = 0; t < T; ++t) {
    for (int s = 0; s < k; ++s) {
      const std::size_t id = at(ids[at(t * k + s)]);
      const StoredExpert& e = experts[id];
      const double weight = d(weights[at(t * k + s)]);
      const std::vector<float>& gate = gates[id];
      const std::vector<float>& up = ups[id];
      const std::vector<float>& down = downs[id];
      std::vector<double> h(at(e.I)), h_scale(at(e.I));
      for (std::int64_t i = 0; i < e.I; ++i) {
        double g = 0.0, u = 0.0, g_abs = 0.0, u_abs = 0.0;
        for (std::int64_t c = 0; c < H; ++c) {
          const double xv = d(x[at(t * H + c)]);
          g += xv * d(gate[at(i * H + c)]);
          u += xv * d(up[at(i * H + c)]);
          g_abs += std::abs(xv * d(gate[at(i * H + c)]));
          u_abs += std::abs(xv * d(up[at(i * H + c)]));
        }
        h[at(i)] = silu(g) * u;
        // First-order propagation of the errors of g and u (|silu'| <= 1.1).
        h_scale[at(i)] = std::abs(h[at(i)]) + 1.1 * g_abs * std::abs(u) + std::abs(silu(g)) * u_abs;
      }
      for (std::int64_t c = 0; c < H; ++c) {
        double y = 0.0, y_scale = 0.0;
        for (std::int64_t i = 0; i < e.I; ++i) {
          y += h[at(i)] * d(down[at(c * e.I + i)]);
          y_scale += h_scale[at(i)] * std::abs(d(down[at(c * e.I + i)]));
        }
        ref.value[at(t * H + c)] += weight * y;
        ref.scale[at(t * H + c)] += std::abs(weight) * y_scale;
      }
    }
  }
  return ref;
}

}  // namespace moeflux::test
