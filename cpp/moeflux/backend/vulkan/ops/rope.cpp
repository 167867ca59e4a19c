// rope: cos and sin are computed on the host exactly as the CPU backend computes them (float32
// angle, then std::cos / std::sin), because GLSL's sin/cos are only accurate on [-pi, pi]; the
// shader applies the rotation.
#include <algorithm>
#include <cmath>
#include <vector>

#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/backend/vulkan/ops/tensor_access.h"
#include "moeflux/backend/vulkan/vulkan_backend.h"
#include "moeflux/util/error.h"
#include "params/rope.h"

namespace moeflux::backend::vk {

void VulkanBackend::rope(Tensor& x, std::span<const std::int32_t> positions, const RopeOptions& options) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  cpu::check_rank(x, 3, "rope", "x");
  f32_storage_of(x, ctx, "rope", "x");
  const std::int64_t T = x.dim(0), heads = x.dim(1), D = x.dim(2);
  MF_CHECK(static_cast<std::int64_t>(positions.size()) == T, ShapeError, "[rope] ", positions.size(),
           " positions for x ", format::shape_string(x.shape()), "; pass one per row");
  MF_CHECK(options.rotary_dim > 0 && options.rotary_dim % 2 == 0 && options.rotary_dim <= D, ShapeError,
           "[rope] rotary_dim ", options.rotary_dim, " must be even, positive and at most the head dimension ", D);
  MF_CHECK(static_cast<std::int64_t>(options.inv_freq.size()) == options.rotary_dim / 2, ShapeError,
           "[rope] inv_freq has ", options.inv_freq.size(), " entries; rotary_dim ", options.rotary_dim, " needs ",
           options.rotary_dim / 2);
  if (T == 0 || heads == 0) return;

  const Pipeline& pipeline = ctx.pipelines.get("rope_f32");
  const std::int64_t half = options.rotary_dim / 2;
  const std::int64_t rows = rows_per_binding(heads * D * 4, dev, "rope");
  for (std::int64_t t0 = 0; t0 < T; t0 += rows) {
    const std::int64_t tn = std::min(rows, T - t0);
    std::vector<float> cs(static_cast<std::size_t>(2 * tn * half));  // [2, tn, half]: cos, then sin
    for (std::int64_t t = 0; t < tn; ++t) {
      const auto position = static_cast<float>(positions[static_cast<std::size_t>(t0 + t)]);
      for (std::int64_t j = 0; j < half; ++j) {
        const float angle = position * options.inv_freq[static_cast<std::size_t>(j)];
        cs[static_cast<std::size_t>(t * half + j)] = std::cos(angle) * options.attention_scaling;
        cs[static_cast<std::size_t>((tn + t) * half + j)] = std::sin(angle) * options.attention_scaling;
      }
    }
    const Binding csb = ctx.recorder.stage(std::as_bytes(std::span(cs)));
    const Window xw = window(x, t0 * heads * D, tn * heads * D, dev);
    const params::RopeParams p{xw.first, 0, static_cast<std::uint32_t>(tn), static_cast<std::uint32_t>(heads),
                               static_cast<std::uint32_t>(D), static_cast<std::uint32_t>(half)};
    ctx.recorder.dispatch(pipeline, {csb}, {xw.binding}, p, {groups_for(tn * heads * half, pipeline.spec.local_size, dev)});
  }
}

}  // namespace moeflux::backend::vk
