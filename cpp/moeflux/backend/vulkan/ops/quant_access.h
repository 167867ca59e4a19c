// Bindings over row ranges of a quantized weight: its three sections (q, scales, biases) as
// windows, which the shaders read through common/dequant.glsl's QuantRows.
#pragma once

#include <cstdint>
#include <string_view>

#include "moeflux/backend/vulkan/ops/tensor_access.h"
#include "moeflux/format/quant.h"

namespace moeflux::backend::vk {

struct QuantWindows {
  Window q;  // first: in words
  Window s;  // first: in 16-bit values
  Window b;
};

// Rows [first_row, first_row + count) of the quantized weight w.
QuantWindows quant_windows(const Tensor& w, const format::QuantLayout& layout, std::int64_t first_row,
                           std::int64_t count, const Device& device);

// Rows of a quantized weight one set of windows may cover (Unsupported when one row is too long).
std::int64_t quant_rows_per_binding(const format::QuantLayout& layout, const Device& device, std::string_view op);

}  // namespace moeflux::backend::vk
