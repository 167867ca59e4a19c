// Windows over the sections of a quantized weight (docs/FORMAT.md section 6).
#include "moeflux/backend/vulkan/ops/quant_access.h"

#include <algorithm>

namespace moeflux::backend::vk {

QuantWindows quant_windows(const Tensor& w, const format::QuantLayout& layout, std::int64_t first_row,
                           std::int64_t count, const Device& device) {
  const auto row = static_cast<std::uint64_t>(first_row), n = static_cast<std::uint64_t>(count);
  const std::uint64_t half_row = static_cast<std::uint64_t>(layout.groups_per_row) * 2;  // scale or bias bytes
  return {byte_window(w, layout.weights_offset + row * layout.row_bytes, n * layout.row_bytes, 4, device),
          byte_window(w, layout.scales_offset + row * half_row, n * half_row, 2, device),
          byte_window(w, layout.biases_offset + row * half_row, n * half_row, 2, device)};
}

std::int64_t quant_rows_per_binding(const format::QuantLayout& layout, const Device& device, std::string_view op) {
  const auto row_bytes = static_cast<std::int64_t>(layout.row_bytes);
  return rows_per_binding(std::max(row_bytes, layout.groups_per_row * 2), device, op);
}

}  // namespace moeflux::backend::vk
