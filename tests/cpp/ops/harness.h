// The op test harness: a backend per test, deterministic random inputs, tensors placed inside
// larger buffers (so views have offset != 0) with sentinel guards around them, and a comparison
// against a double-precision reference with an error bound per element: |got - ref| <= rtol * scale.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "moeflux/backend/backend.h"
#include "moeflux/backend/cpu/simd.h"

namespace moeflux::test {

using backend::Backend;
using backend::Shape;
using backend::Tensor;

// Uniform floats in [lo, hi), reproducible from `seed`.
std::vector<float> random_values(std::size_t n, unsigned seed, float lo = -1.0f, float hi = 1.0f);

// A tensor of `shape` inside a buffer with `guard` sentinel floats before and after it. The body
// starts as NaN (poisoned outputs) unless `values` are given (inputs).
class Guarded {
 public:
  Guarded(Backend& backend, Shape shape, std::int64_t guard = 37);
  Guarded(Backend& backend, Shape shape, std::span<const float> values, std::int64_t guard = 37);

  Tensor& tensor() { return view_; }
  const Tensor& tensor() const { return view_; }
  std::vector<float> values() const;  // the body, downloaded
  // Adds a failure when any sentinel changed (an op wrote outside its tensor).
  void expect_guards_intact(const std::string& what) const;

 private:
  Backend* backend_;
  Tensor whole_;
  Tensor view_;
  std::int64_t guard_;
};

// A reference result in double precision and, per element, the magnitude its float32 rounding
// errors scale with (for a sum, the sum of the absolute values of its terms).
struct Reference {
  std::vector<double> value;
  std::vector<double> scale;
};

// Adds a failure for every element (first few reported) that is not finite or misses the bound.
void expect_close(std::span<const float> got, const Reference& ref, double rtol,
                  const std::string& what);

std::unique_ptr<Backend> make_backend(int threads = 0);
// A CPU backend with the given kernels; GTEST_SKIP-worthy when `simd` is not what this CPU runs
// (check backend_simd()).
std::unique_ptr<Backend> make_cpu_backend(int threads, backend::cpu::Simd simd);
backend::cpu::Simd backend_simd(const Backend& backend);

}  // namespace moeflux::test
