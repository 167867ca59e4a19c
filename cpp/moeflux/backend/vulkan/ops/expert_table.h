// What the expert kernels (moe_pairs, moe_grouped) share: an expert table entry (the device
// addresses of an expert's gate, up and down blocks), the blocks' memory ranges, and the QuantRows
// fields of their parameters.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "moeflux/backend/tensor.h"
#include "moeflux/backend/vulkan/recorder.h"
#include "moeflux/format/quant.h"

namespace moeflux::backend::vk {

// Words (low, high) of the addresses of the three blocks (tensors of this backend, offset 0).
std::array<std::uint32_t, 6> table_entry(const std::array<Tensor, 3>& blocks);

// The memory of the experts' blocks, for Recorder::note_reads before the kernels that read them
// by address.
std::vector<Binding> block_ranges(std::span<const std::array<Tensor, 3>> experts);

// row_words, groups, group_size, scale_bf16, s_first, b_first of a quantized block of this form
// (left as they are for float blocks).
template <typename Params>
void set_quant_rows(Params& p, format::Dtype dtype, const format::QuantParams& quant, const Shape& shape) {
  if (!format::is_quantized(dtype)) return;
  const format::QuantLayout layout = format::quant_layout(shape, quant);
  p.row_words = static_cast<std::uint32_t>(layout.row_bytes / 4);
  p.groups = static_cast<std::uint32_t>(layout.groups_per_row);
  p.group_size = static_cast<std::uint32_t>(quant.group_size);
  p.scale_bf16 = quant.scale_dtype == format::Dtype::bf16 ? 1u : 0u;
  p.s_first = static_cast<std::uint32_t>(layout.scales_offset / 2);
  p.b_first = static_cast<std::uint32_t>(layout.biases_offset / 2);
}

}  // namespace moeflux::backend::vk
