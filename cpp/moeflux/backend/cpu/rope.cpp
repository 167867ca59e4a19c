// rope: NeoX "rotate half" rotary embedding over the first rotary_dim channels of each head, as
// transformers' apply_rotary_pos_emb: angle = float(pos) * inv_freq[j] in float32, cos and sin
// times attention_scaling, y = x * cos + rotate_half(x) * sin. Channels past rotary_dim pass.
#include <cmath>
#include <vector>

#include "moeflux/backend/cpu/cpu_backend.h"
#include "moeflux/backend/cpu/kernels.h"
#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/util/error.h"

namespace moeflux::backend::cpu {

void rope(float* x, std::int64_t T, std::int64_t heads, std::int64_t D,
          const std::int32_t* positions, const RopeOptions& options) {
  const std::int64_t half = options.rotary_dim / 2;
  std::vector<float> cos_t(static_cast<std::size_t>(half)), sin_t(static_cast<std::size_t>(half));
  for (std::int64_t t = 0; t < T; ++t) {
    const auto position = static_cast<float>(positions[t]);
    for (std::int64_t j = 0; j < half; ++j) {
      const float angle = position * options.inv_freq[static_cast<std::size_t>(j)];
      cos_t[static_cast<std::size_t>(j)] = std::cos(angle) * options.attention_scaling;
      sin_t[static_cast<std::size_t>(j)] = std::sin(angle) * options.attention_scaling;
    }
    for (std::int64_t h = 0; h < heads; ++h) {
      float* xh = x + (t * heads + h) * D;
      for (std::int64_t j = 0; j < half; ++j) {
        const float c = cos_t[static_cast<std::size_t>(j)];
        const float s = sin_t[static_cast<std::size_t>(j)];
        const float a = xh[j];
        const float b = xh[j + half];
        xh[j] = a * c - b * s;
        xh[j + half] = b * c + a * s;
      }
    }
  }
}

void CpuBackend::rope(Tensor& x, std::span<const std::int32_t> positions, const RopeOptions& options) {
  check_rank(x, 3, "rope", "x");
  const std::int64_t T = x.dim(0), heads = x.dim(1), D = x.dim(2);
  MF_CHECK(static_cast<std::int64_t>(positions.size()) == T, ShapeError, "[rope] ", positions.size(),
           " positions for x ", format::shape_string(x.shape()), "; pass one per row");
  MF_CHECK(options.rotary_dim > 0 && options.rotary_dim % 2 == 0 && options.rotary_dim <= D,
           ShapeError, "[rope] rotary_dim ", options.rotary_dim,
           " must be even, positive and at most the head dimension ", D);
  MF_CHECK(static_cast<std::int64_t>(options.inv_freq.size()) == options.rotary_dim / 2, ShapeError,
           "[rope] inv_freq has ", options.inv_freq.size(), " entries; rotary_dim ",
           options.rotary_dim, " needs ", options.rotary_dim / 2);
  cpu::rope(data_of(x, "rope", "x"), T, heads, D, positions.data(), options);
}

}  // namespace moeflux::backend::cpu
