// attention_inputs in one dispatch (shaders/attention_inputs.comp): per head row, q and k
// normalised and rotated (k straight into its cache row), v copied into its cache row. Shapes
// beyond one binding, or norm weights of two dtypes, take the op-by-op default.
#include <algorithm>
#include <vector>

#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/backend/vulkan/ops/rope_table.h"
#include "moeflux/backend/vulkan/ops/tensor_access.h"
#include "moeflux/backend/vulkan/vulkan_backend.h"
#include "moeflux/util/error.h"
#include "params/attention_inputs.h"

namespace moeflux::backend::vk {

void VulkanBackend::attention_inputs(Tensor& q, Tensor& k, const Tensor& v, const Tensor& q_norm,
                                     const Tensor& k_norm, const NormOptions& norm,
                                     std::span<const std::int32_t> positions, const RopeOptions& rope,
                                     Tensor& k_cache, Tensor& v_cache, std::int64_t first_row) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  auto op_by_op = [&] {
    Backend::attention_inputs(q, k, v, q_norm, k_norm, norm, positions, rope, k_cache, v_cache, first_row);
  };
  if (q.rank() != 3 || k.rank() != 3 || q_norm.defined() != k_norm.defined()) return op_by_op();  // it reports
  const std::int64_t T = q.dim(0), nh = q.dim(1), D = q.dim(2), nkv = k.dim(1);
  const std::int64_t Dv = nkv == 0 || T == 0 ? 0 : v.numel() / (T * nkv);
  const bool normed = q_norm.defined();
  if (T == 0) return;
  if (k.dim(0) != T || k.dim(2) != D || v.dim(0) != T || k_cache.rank() != 2 || v_cache.rank() != 2 ||
      k_cache.dim(1) != nkv * D || v_cache.dim(1) != nkv * Dv || first_row < 0 ||
      first_row + T > std::min(k_cache.dim(0), v_cache.dim(0)) || static_cast<std::int64_t>(positions.size()) != T ||
      (normed && (q_norm.numel() != D || k_norm.numel() != D || q_norm.dtype() != k_norm.dtype() ||
                  q_norm.quantized())))
    return op_by_op();  // names what is wrong, or handles it
  if (std::max({T * nh * D, T * nkv * D, T * nkv * Dv}) * 4 > window_bytes(dev)) return op_by_op();
  check_rope(rope, D, "attention_inputs");
  f32_storage_of(q, ctx, "attention_inputs", "q");
  f32_storage_of(k, ctx, "attention_inputs", "k");
  f32_storage_of(v, ctx, "attention_inputs", "v");
  f32_storage_of(k_cache, ctx, "attention_inputs", "k_cache");
  f32_storage_of(v_cache, ctx, "attention_inputs", "v_cache");
  cpu::check_disjoint(k, k_cache, "attention_inputs", "k");
  cpu::check_disjoint(v, v_cache, "attention_inputs", "v");

  const Window csw = rope_window(positions, rope);
  const Binding csb = csw.binding;
  const Window qw = whole(q, dev), kw = whole(k, dev), vw = whole(v, dev);
  const Window kcw = window(k_cache, first_row * nkv * D, T * nkv * D, dev);
  const Window vcw = window(v_cache, first_row * nkv * Dv, T * nkv * Dv, dev);
  const Window qnw = normed ? whole(q_norm, dev) : Window{csb, 0};  // unread without norms
  const Window knw = normed ? whole(k_norm, dev) : Window{csb, 0};
  const Dtype wdtype = normed ? q_norm.dtype() : Dtype::f32;
  const Pipeline& pipeline = ctx.pipelines.get(variant("attention_inputs", wdtype, dev.features().subgroup_arithmetic));
  const params::AttentionInputsParams p{csw.first,
                                        qnw.first,
                                        knw.first,
                                        kw.first,
                                        vw.first,
                                        qw.first,
                                        kcw.first,
                                        vcw.first,
                                        static_cast<std::uint32_t>(T),
                                        static_cast<std::uint32_t>(nh),
                                        static_cast<std::uint32_t>(nkv),
                                        static_cast<std::uint32_t>(D),
                                        static_cast<std::uint32_t>(Dv),
                                        static_cast<std::uint32_t>(rope.rotary_dim / 2),
                                        norm.eps,
                                        normed ? (norm.zero_centered ? 2u : 1u) : 0u};
  ctx.recorder.dispatch(pipeline, {csb, qnw.binding, knw.binding, kw.binding, vw.binding},
                        {qw.binding, kcw.binding, vcw.binding}, p, {groups_for(T * (nh + 2 * nkv), 1, dev)});
}

}  // namespace moeflux::backend::vk
