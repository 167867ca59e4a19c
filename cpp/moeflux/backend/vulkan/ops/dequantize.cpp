// dequantize: rows of a quantized weight to f32 on the device (shaders/dequantize.comp), binding
// the three sections (q, scales, biases) as windows over the rows wanted.
#include <algorithm>

#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/backend/vulkan/ops/tensor_access.h"
#include "moeflux/backend/vulkan/vulkan_backend.h"
#include "moeflux/format/quant.h"
#include "moeflux/util/error.h"
#include "params/dequantize.h"

namespace moeflux::backend::vk {

void VulkanBackend::dequantize(const Tensor& w, std::int64_t first_row, Tensor& out) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  storage_of(w, ctx, "dequantize", "w");
  f32_storage_of(out, ctx, "dequantize", "out");
  MF_CHECK(w.quantized(), Unsupported, "[dequantize] w has dtype ", format::dtype_name(w.dtype()),
           "; only quantized weights dequantize");
  cpu::check_rank(out, 2, "dequantize", "out");
  const format::QuantLayout layout = format::quant_layout(w.shape(), w.quant());
  const std::int64_t n = out.dim(0);
  MF_CHECK(out.dim(1) == layout.cols && first_row >= 0 && first_row + n <= layout.rows, ShapeError,
           "[dequantize] rows [", first_row, ", ", first_row + n, ") of w ", format::shape_string(w.shape()),
           " into out ", format::shape_string(out.shape()));
  if (n == 0 || layout.cols == 0) return;

  const Pipeline& pipeline = ctx.pipelines.get(util::concat("dequantize_", format::dtype_name(w.dtype()), "_f32"));
  const auto row_bytes = static_cast<std::int64_t>(layout.row_bytes);
  const std::uint64_t half_row = static_cast<std::uint64_t>(layout.groups_per_row) * 2;  // scale or bias bytes
  const std::int64_t rows = rows_per_binding(std::max(row_bytes, layout.cols * 4), dev, "dequantize");
  for (std::int64_t r0 = 0; r0 < n; r0 += rows) {
    const std::int64_t rn = std::min(rows, n - r0);
    const auto row = static_cast<std::uint64_t>(first_row + r0), count = static_cast<std::uint64_t>(rn);
    const Window q = byte_window(w, layout.weights_offset + row * layout.row_bytes, count * layout.row_bytes, 4, dev);
    const Window s = byte_window(w, layout.scales_offset + row * half_row, count * half_row, 2, dev);
    const Window b = byte_window(w, layout.biases_offset + row * half_row, count * half_row, 2, dev);
    const Window o = window(out, r0 * layout.cols, rn * layout.cols, dev);
    const params::DequantizeParams p{q.first, s.first, b.first, static_cast<std::uint32_t>(layout.row_bytes / 4),
                                     static_cast<std::uint32_t>(layout.groups_per_row),
                                     static_cast<std::uint32_t>(w.quant().group_size),
                                     w.quant().scale_dtype == Dtype::bf16 ? 1u : 0u, o.first,
                                     static_cast<std::uint32_t>(rn), static_cast<std::uint32_t>(layout.cols)};
    ctx.recorder.dispatch(pipeline, {q.binding, s.binding, b.binding}, {o.binding}, p,
                          {groups_for(rn * layout.cols / 8, pipeline.spec.local_size, dev)});
  }
}

}  // namespace moeflux::backend::vk
