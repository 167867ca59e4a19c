// rope: cos and sin from the host (rope_table, kept on the device by rope_window), the shader
// applies the rotation.
#include <algorithm>
#include <cmath>
#include <vector>

#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/backend/vulkan/ops/rope_table.h"
#include "moeflux/backend/vulkan/ops/tensor_access.h"
#include "moeflux/backend/vulkan/vulkan_backend.h"
#include "moeflux/util/error.h"
#include "params/rope.h"

namespace moeflux::backend::vk {

std::vector<float> rope_table(std::span<const std::int32_t> positions, const RopeOptions& options) {
  const auto T = static_cast<std::int64_t>(positions.size());
  const std::int64_t half = options.rotary_dim / 2;
  std::vector<float> cs(static_cast<std::size_t>(2 * T * half));
  for (std::int64_t t = 0; t < T; ++t) {
    const auto position = static_cast<float>(positions[static_cast<std::size_t>(t)]);
    for (std::int64_t j = 0; j < half; ++j) {
      const float angle = position * options.inv_freq[static_cast<std::size_t>(j)];
      cs[static_cast<std::size_t>(t * half + j)] = std::cos(angle) * options.attention_scaling;
      cs[static_cast<std::size_t>((T + t) * half + j)] = std::sin(angle) * options.attention_scaling;
    }
  }
  return cs;
}

void check_rope(const RopeOptions& options, std::int64_t D, const char* op) {
  MF_CHECK(options.rotary_dim > 0 && options.rotary_dim % 2 == 0 && options.rotary_dim <= D, ShapeError, "[", op,
           "] rotary_dim ", options.rotary_dim, " must be even, positive and at most the head dimension ", D);
  MF_CHECK(static_cast<std::int64_t>(options.inv_freq.size()) == options.rotary_dim / 2, ShapeError, "[", op,
           "] inv_freq has ", options.inv_freq.size(), " entries; rotary_dim ", options.rotary_dim, " needs ",
           options.rotary_dim / 2);
}

Window VulkanBackend::rope_window(std::span<const std::int32_t> positions, const RopeOptions& options) {
  const std::int64_t n = 2 * static_cast<std::int64_t>(positions.size()) * (options.rotary_dim / 2);
  const bool same = rope_table_.defined() && std::ranges::equal(positions, rope_positions_) &&
                    options.rotary_dim == rope_options_.rotary_dim && options.inv_freq == rope_options_.inv_freq &&
                    options.attention_scaling == rope_options_.attention_scaling;
  if (!same) {
    const std::vector<float> cs = rope_table(positions, options);
    if (!rope_table_.defined() || rope_table_.numel() < n) rope_table_ = empty({std::max<std::int64_t>(n, 1)});
    context_->recorder.upload(std::as_bytes(std::span(cs)), window(rope_table_, 0, n, context_->device).binding);
    rope_positions_.assign(positions.begin(), positions.end());
    rope_options_ = options;
  }
  return window(rope_table_, 0, n, context_->device);
}

void VulkanBackend::rope(Tensor& x, std::span<const std::int32_t> positions, const RopeOptions& options) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  cpu::check_rank(x, 3, "rope", "x");
  f32_storage_of(x, ctx, "rope", "x");
  const std::int64_t T = x.dim(0), heads = x.dim(1), D = x.dim(2);
  MF_CHECK(static_cast<std::int64_t>(positions.size()) == T, ShapeError, "[rope] ", positions.size(),
           " positions for x ", format::shape_string(x.shape()), "; pass one per row");
  check_rope(options, D, "rope");
  if (T == 0 || heads == 0) return;

  const Pipeline& pipeline = ctx.pipelines.get("rope_f32");
  const std::int64_t half = options.rotary_dim / 2;
  const std::int64_t rows = rows_per_binding(heads * D * 4, dev, "rope");
  for (std::int64_t t0 = 0; t0 < T; t0 += rows) {
    const std::int64_t tn = std::min(rows, T - t0);
    const Window csw = rope_window(positions.subspan(static_cast<std::size_t>(t0), static_cast<std::size_t>(tn)), options);
    const Window xw = window(x, t0 * heads * D, tn * heads * D, dev);
    const params::RopeParams p{xw.first, csw.first, static_cast<std::uint32_t>(tn), static_cast<std::uint32_t>(heads),
                               static_cast<std::uint32_t>(D), static_cast<std::uint32_t>(half)};
    ctx.recorder.dispatch(pipeline, {csw.binding}, {xw.binding}, p,
                          {groups_for(tn * heads * half, pipeline.spec.local_size, dev)});
  }
}

}  // namespace moeflux::backend::vk
