// The base implementations of the optional ops: a backend that lacks one says so by name.
#include "moeflux/backend/backend.h"

#include <vector>

#include "moeflux/backend/routing.h"
#include "moeflux/util/error.h"

namespace moeflux::backend {

namespace {
[[noreturn]] void not_implemented(const char* op, const Backend& backend) {
  throw Unsupported(util::concat("[", op, "] is not implemented on this backend (", backend.name(), ")"));
}
}  // namespace

void Backend::download_all(std::span<const TensorDownload> items) {
  for (const TensorDownload& item : items) download(*item.src, item.dst);
}

void Backend::route_softmax_topk(const Tensor& logits, const RouteOptions& options, Tensor& routing) {
  MF_CHECK(logits.rank() == 2 && routing.rank() == 2 && routing.dim(0) == logits.dim(0) &&
               routing.dim(1) == 2 * static_cast<std::int64_t>(options.k) && options.k >= 1 && options.k <= logits.dim(1),
           ShapeError, "[route_softmax_topk] logits ", format::shape_string(logits.shape()), ", routing ",
           format::shape_string(routing.shape()), ", k = ", options.k, "; expected [T, E], [T, 2k], 1 <= k <= E");
  const std::int64_t T = logits.dim(0);
  const auto E = static_cast<int>(logits.dim(1));
  std::vector<float> values(static_cast<std::size_t>(logits.numel()));
  download(logits, values);
  std::vector<std::int32_t> experts(static_cast<std::size_t>(T * options.k));
  std::vector<float> weights(experts.size());
  softmax_topk(values, T, E, options, experts, weights);
  upload(routing_to_tensor(experts, weights, options.k), routing);
}

void Backend::attention_inputs(Tensor& q, Tensor& k, const Tensor& v, const Tensor& q_norm, const Tensor& k_norm,
                               const NormOptions& norm, std::span<const std::int32_t> positions,
                               const RopeOptions& rope_options, Tensor& k_cache, Tensor& v_cache,
                               std::int64_t first_row) {
  MF_CHECK(q.rank() == 3 && k.rank() == 3 && q.dim(0) == k.dim(0) && q.dim(2) == k.dim(2), ShapeError,
           "[attention_inputs] q ", format::shape_string(q.shape()), " and k ", format::shape_string(k.shape()),
           " must be [T, heads, D] with the same T and D");
  const std::int64_t T = q.dim(0), D = q.dim(2);
  if (q_norm.defined()) {
    Tensor q_heads = q.view({T * q.dim(1), D});
    rms_norm(q_heads, q_norm, norm, q_heads);
  }
  if (k_norm.defined()) {
    Tensor k_heads = k.view({T * k.dim(1), D});
    rms_norm(k_heads, k_norm, norm, k_heads);
  }
  rope(q, positions, rope_options);
  rope(k, positions, rope_options);
  write_rows(k.view({T, k.dim(1) * D}), k_cache, first_row);
  write_rows(v, v_cache, first_row);
}

void Backend::attention_with_inputs(Tensor& q, Tensor& k, const Tensor& v, const Tensor& q_norm,
                                    const Tensor& k_norm, const NormOptions& norm,
                                    std::span<const std::int32_t> positions, const RopeOptions& rope_options,
                                    Tensor& k_cache, Tensor& v_cache, const AttentionOptions& options, Tensor& out,
                                    const InputScale* input_scale) {
  if (input_scale != nullptr) {
    Tensor v_scaled = empty(v.shape());
    rms_scale(input_scale->x, input_scale->eps, q, q);
    rms_scale(input_scale->x, input_scale->eps, k, k);
    rms_scale(input_scale->x, input_scale->eps, v, v_scaled);
    return attention_with_inputs(q, k, v_scaled, q_norm, k_norm, norm, positions, rope_options, k_cache, v_cache,
                                 options, out);
  }
  attention_inputs(q, k, v, q_norm, k_norm, norm, positions, rope_options, k_cache, v_cache, options.n_past);
  MF_CHECK(k_cache.rank() == 2 && v_cache.rank() == 2 && k.rank() == 3 && k.dim(1) > 0 &&
               k_cache.dim(1) % k.dim(1) == 0 && v_cache.dim(1) % k.dim(1) == 0,
           ShapeError, "[attention_with_inputs] k_cache ", format::shape_string(k_cache.shape()), " and v_cache ",
           format::shape_string(v_cache.shape()), " must be [capacity, nkv * D] and [capacity, nkv * Dv] for k ",
           format::shape_string(k.shape()));
  const std::int64_t nkv = k.dim(1);
  attention(q, k_cache.view({k_cache.dim(0), nkv, k_cache.dim(1) / nkv}),
            v_cache.view({v_cache.dim(0), nkv, v_cache.dim(1) / nkv}), options, out);
}

void Backend::matmul_add(const Tensor& x, const Tensor& w, Tensor& y) {
  Tensor product = empty(y.shape());
  matmul(x, w, product);
  add(y, product, y);
}

void Backend::norm_matmul(const Tensor& x, const Tensor& norm_weight, const NormOptions& options,
                          std::span<const Tensor> ws, std::span<Tensor> ys, Tensor* normed) {
  MF_CHECK(ws.size() == ys.size(), ShapeError, "[norm_matmul] ", ws.size(), " weights but ", ys.size(), " outputs");
  Tensor scratch = normed != nullptr ? *normed : empty(x.shape());
  rms_norm(x, norm_weight, options, scratch);
  for (std::size_t i = 0; i < ws.size(); ++i) matmul(scratch, ws[i], ys[i]);
}

void Backend::router(const Tensor& x, const Tensor& norm_weight, const NormOptions& norm, const Tensor& router,
                     const RouteOptions& options, Tensor& logits, Tensor& routing, Tensor& normed) {
  norm_matmul(x, norm_weight, norm, std::span(&router, 1), std::span(&logits, 1), &normed);
  route_softmax_topk(logits, options, routing);
}

void Backend::moe_experts_routed(const Tensor&, const Tensor&, int, Tensor&, bool, const FoldedNorm*) {
  not_implemented("moe_experts_routed", *this);
}

void Backend::rms_scale(const Tensor&, float, const Tensor&, Tensor&) { not_implemented("rms_scale", *this); }

void Backend::apply_norm_weight(const Tensor&, const Tensor&, const NormOptions&, Tensor&) {
  not_implemented("apply_norm_weight", *this);
}

void Backend::causal_conv1d(const Tensor&, const Tensor&, Tensor&, Tensor&) {
  not_implemented("causal_conv1d", *this);
}

void Backend::copy_column_blocks(const Tensor&, const ColumnBlocks&, Tensor&) {
  not_implemented("copy_column_blocks", *this);
}

void Backend::gated_delta_rule(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                               const Tensor&, const DeltaRuleOptions&, Tensor&, Tensor&) {
  not_implemented("gated_delta_rule", *this);
}

void Backend::delta_rule_gates(const Tensor&, const Tensor&, const Tensor&, const Tensor&, Tensor&,
                               Tensor&) {
  not_implemented("delta_rule_gates", *this);
}

void Backend::gated_rms_norm(const Tensor&, const Tensor&, const Tensor&, float, Tensor&) {
  not_implemented("gated_rms_norm", *this);
}

}  // namespace moeflux::backend
