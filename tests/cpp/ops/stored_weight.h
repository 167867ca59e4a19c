// Weights in their stored bytes for the op tests: quantized with format::quantize or rounded to
// f16 / bf16, together with their exact float32 values (format::dequantize_rows / to_f32), which
// the double-precision references multiply.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "moeflux/backend/tensor.h"
#include "moeflux/format/quant.h"

namespace moeflux::test {

struct StoredWeight {
  format::Dtype dtype = format::Dtype::f32;
  backend::Shape shape;
  format::QuantParams quant{};  // quantized only
  std::vector<std::byte> bytes;
  std::vector<float> values;  // the exact widened values, [rows, cols]

  format::TensorView view(const std::string& name) const;
};

// Uniform values in [lo, hi) of [rows, cols], reproducible from `seed`, stored as `dtype` (any
// dtype; quantized with `quant`).
StoredWeight make_weight(format::Dtype dtype, std::int64_t rows, std::int64_t cols, unsigned seed,
                         const format::QuantParams& quant = {}, float lo = -1.0f, float hi = 1.0f);

}  // namespace moeflux::test
