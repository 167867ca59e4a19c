// router_topk: the router's logits and their softmax top-k in one dispatch (moe_router_topk) for
// the few tokens of a decode step with float router weights, sparing a dispatch and a barrier per
// MoE layer; anything else takes matmul then route_softmax_topk.
#include <algorithm>

#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/backend/vulkan/vulkan_backend.h"
#include "params/moe_router_topk.h"

namespace moeflux::backend::vk {
namespace {

constexpr std::int64_t kRouterMaxTokens = 8;      // one workgroup per token: beyond, the matmul path
constexpr std::int64_t kRouterMaxHidden = 4096;   // MAX_K_X of moe_router_topk.comp
constexpr std::int64_t kRouterMaxExperts = 512;   // MAX_E of moe_router_topk.comp
constexpr std::int64_t kRouteLaneValues = 16;     // its LANE_VALUES (common/route_subgroup.glsl)

}  // namespace

void VulkanBackend::router_topk(const Tensor& x, const Tensor& router, const RouteOptions& options, Tensor& logits,
                                Tensor& routing) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  const std::int64_t subgroup = dev.features().subgroup_size;
  const bool shapes = x.rank() == 2 && router.rank() == 2 && logits.rank() == 2 && routing.rank() == 2 &&
                      router.dim(1) == x.dim(1) && logits.dim(0) == x.dim(0) && logits.dim(1) == router.dim(0) &&
                      routing.dim(0) == x.dim(0) && routing.dim(1) == 2 * static_cast<std::int64_t>(options.k);
  const bool fused = shapes && dev.features().subgroup_arithmetic && !router.quantized() && x.dim(0) >= 1 &&
                     x.dim(0) <= kRouterMaxTokens && x.dim(1) <= kRouterMaxHidden &&
                     router.dim(0) <= std::min(kRouterMaxExperts, kRouteLaneValues * subgroup) && options.k >= 1 &&
                     options.k <= subgroup && options.k <= router.dim(0) &&
                     router.dim(0) <= rows_per_binding(router.dim(1) * static_cast<std::int64_t>(element_bytes(router.dtype())),
                                                       dev, "router_topk");
  if (!fused) {  // the two ops, with their own checks and errors
    Backend::router_topk(x, router, options, logits, routing);
    return;
  }
  f32_storage_of(x, ctx, "router_topk", "x");
  storage_of(router, ctx, "router_topk", "router");
  f32_storage_of(logits, ctx, "router_topk", "logits");
  f32_storage_of(routing, ctx, "router_topk", "routing");
  cpu::check_disjoint(x, logits, "router_topk", "x");
  cpu::check_disjoint(logits, routing, "router_topk", "logits");
  const std::int64_t T = x.dim(0), K = x.dim(1), E = router.dim(0);
  const Pipeline& pipeline = ctx.pipelines.get(variant("moe_router_topk", router.dtype(), true));
  const Window xw = window(x, 0, T * K, dev), ww = window(router, 0, E * K, dev);
  const Window lw = whole(logits, dev), rw = whole(routing, dev);
  const params::MoeRouterTopkParams p{xw.first,
                                      ww.first,
                                      lw.first,
                                      rw.first,
                                      static_cast<std::uint32_t>(T),
                                      static_cast<std::uint32_t>(K),
                                      static_cast<std::uint32_t>(E),
                                      static_cast<std::uint32_t>(options.k),
                                      options.normalize ? 1u : 0u};
  ctx.recorder.dispatch(pipeline, {xw.binding, ww.binding}, {lw.binding, rw.binding}, p, {groups_for(T, 1, dev)});
}

}  // namespace moeflux::backend::vk
