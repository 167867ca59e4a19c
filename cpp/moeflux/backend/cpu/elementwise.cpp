// Elementwise ops: swiglu, add, sigmoid_mul. silu(x) = x / (1 + exp(-x)) and
// sigmoid(x) = 1 / (1 + exp(-x)), the float32 formulas of PyTorch's CPU kernels.
#include <cmath>

#include "moeflux/backend/cpu/cpu_backend.h"
#include "moeflux/backend/cpu/kernels.h"
#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/util/error.h"

namespace moeflux::backend::cpu {

void swiglu(const float* gate, const float* up, std::int64_t n, float* out) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = (g / (1.0f + std::exp(-g))) * up[i];
  }
}

void add(const float* a, const float* b, std::int64_t n, float* out) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void sigmoid_mul(const float* gate, const float* x, std::int64_t T, std::int64_t G, std::int64_t C,
                 float* out) {
  const std::int64_t group = C / G;
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t g = 0; g < G; ++g) {
      const float s = 1.0f / (1.0f + std::exp(-gate[t * G + g]));
      const std::int64_t begin = t * C + g * group;
      for (std::int64_t c = begin; c < begin + group; ++c) out[c] = s * x[c];
    }
  }
}

void CpuBackend::swiglu(const Tensor& gate, const Tensor& up, Tensor& out) {
  MF_CHECK(gate.shape() == up.shape() && gate.shape() == out.shape(), ShapeError,
           "[swiglu] gate ", format::shape_string(gate.shape()), ", up ",
           format::shape_string(up.shape()), " and out ", format::shape_string(out.shape()),
           " must have the same shape");
  check_disjoint_or_same(gate, out, "swiglu", "gate");
  check_disjoint_or_same(up, out, "swiglu", "up");
  cpu::swiglu(data_of(gate, "swiglu", "gate"), data_of(up, "swiglu", "up"), out.numel(),
              data_of(out, "swiglu", "out"));
}

void CpuBackend::add(const Tensor& a, const Tensor& b, Tensor& out) {
  MF_CHECK(a.shape() == b.shape() && a.shape() == out.shape(), ShapeError, "[add] a ",
           format::shape_string(a.shape()), ", b ", format::shape_string(b.shape()), " and out ",
           format::shape_string(out.shape()), " must have the same shape");
  check_disjoint_or_same(a, out, "add", "a");
  check_disjoint_or_same(b, out, "add", "b");
  cpu::add(data_of(a, "add", "a"), data_of(b, "add", "b"), out.numel(), data_of(out, "add", "out"));
}

void CpuBackend::sigmoid_mul(const Tensor& gate, const Tensor& x, Tensor& out) {
  // Rows are axis 0; the rest of each tensor is one row of G (gate) or C (x, out) elements.
  MF_CHECK(gate.rank() >= 1 && x.rank() >= 1 && gate.dim(0) == x.dim(0) && x.shape() == out.shape(),
           ShapeError, "[sigmoid_mul] gate ", format::shape_string(gate.shape()), ", x ",
           format::shape_string(x.shape()), " and out ", format::shape_string(out.shape()),
           "; expected gate [T, G], x and out [T, C]");
  const std::int64_t T = x.dim(0);
  const std::int64_t C = T == 0 ? 0 : x.numel() / T;
  const std::int64_t G = T == 0 ? 0 : gate.numel() / T;
  MF_CHECK(T == 0 || (G > 0 && C % G == 0), ShapeError, "[sigmoid_mul] gate ",
           format::shape_string(gate.shape()), " must split the ", C,
           " columns of x into equal groups");
  check_disjoint_or_same(x, out, "sigmoid_mul", "x");
  check_disjoint(gate, out, "sigmoid_mul", "gate");
  const float* g = data_of(gate, "sigmoid_mul", "gate");
  const float* xs = data_of(x, "sigmoid_mul", "x");
  float* o = data_of(out, "sigmoid_mul", "out");
  if (T > 0) cpu::sigmoid_mul(g, xs, T, G, C, o);
}

}  // namespace moeflux::backend::cpu
