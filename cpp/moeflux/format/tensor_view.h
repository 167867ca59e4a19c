// A named, typed view of tensor bytes owned by someone else (a mapped file, an expert slot).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "moeflux/format/dtype.h"

namespace moeflux::format {

using Shape = std::vector<std::int64_t>;  // outer to inner, as in PyTorch

std::int64_t element_count(const Shape& shape);
std::string shape_string(const Shape& shape);  // "[128, 2048]"

struct TensorView {
  std::string name;
  Dtype dtype = Dtype::f32;
  Shape shape;
  const std::byte* data = nullptr;
  std::size_t nbytes = 0;
  // For quantized dtypes only (format/quant.h): elements per scale/bias group, and their type.
  int group_size = 0;
  Dtype scale_dtype = Dtype::bf16;

  std::int64_t numel() const { return element_count(shape); }
};

}  // namespace moeflux::format
