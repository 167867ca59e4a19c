// moe_experts: the routed experts of a MoE block, as transformers' Qwen3MoeSparseMoeBlock loop:
// for each listed expert in ascending order, its tokens' rows are gathered, run through
// down(silu(gate x) * up x) with the stored weights (weight_matmul: no whole-expert widening),
// and out[token] += y * weight. Splitting the experts into ascending batches keeps every token's
// sum in the same order, so batched calls give the bits of one call.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "moeflux/backend/cpu/cpu_backend.h"
#include "moeflux/backend/cpu/kernels.h"
#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/backend/cpu/weight.h"
#include "moeflux/util/error.h"

namespace moeflux::backend::cpu {
namespace {

WeightRef expert_tensor(const format::TensorView& view, const Shape& expected, std::int32_t expert,
                        const char* role) {
  MF_CHECK(view.shape == expected, ShapeError, "[moe_experts] expert ", expert, " ", role, " '",
           view.name, "' has shape ", format::shape_string(view.shape), "; expected ",
           format::shape_string(expected));
  return weight_ref(view, "moe_experts", util::concat("expert ", expert, " ", role));
}

// BLAS needs aligned float32; the packed format always aligns, hand-made views may not.
WeightRef aligned(WeightRef w, AlignedBuffer& f32_copy) {
  if (w.dtype != Dtype::f32 || reinterpret_cast<std::uintptr_t>(w.data) % alignof(float) == 0) return w;
  float* copy = f32_copy.reserve(w.rows * w.cols);
  std::memcpy(copy, w.data, static_cast<std::size_t>(w.rows * w.cols) * sizeof(float));
  w.data = reinterpret_cast<const std::byte*>(copy);
  return w;
}

}  // namespace

void moe_expert_accumulate(const float* x, std::int64_t hidden, std::span<const std::int64_t> tokens,
                           std::span<const float> weights, const ExpertRefs& expert,
                           MoeScratch& scratch, MatmulContext& ctx, float* out) {
  const auto M = static_cast<std::int64_t>(tokens.size());
  const std::int64_t I = expert.gate.rows;
  float* xs = scratch.x.reserve(M * hidden);
  for (std::int64_t r = 0; r < M; ++r) {
    std::copy_n(x + tokens[static_cast<std::size_t>(r)] * hidden, hidden, xs + r * hidden);
  }
  float* gate = scratch.gate.reserve(M * I);
  float* up = scratch.up.reserve(M * I);
  weight_matmul(xs, M, expert.gate, gate, ctx);
  weight_matmul(xs, M, expert.up, up, ctx);
  cpu::swiglu(gate, up, M * I, gate);
  float* y = scratch.y.reserve(M * hidden);
  weight_matmul(gate, M, expert.down, y, ctx);
  for (std::int64_t r = 0; r < M; ++r) {
    const float w = weights[static_cast<std::size_t>(r)];
    float* out_row = out + tokens[static_cast<std::size_t>(r)] * hidden;
    const float* y_row = y + r * hidden;
    for (std::int64_t c = 0; c < hidden; ++c) out_row[c] += y_row[c] * w;
  }
}

void CpuBackend::moe_experts(const Tensor& x, const MoeRouting& routing,
                             std::span<const ExpertWeights> experts, Tensor& out, bool accumulate) {
  check_rank(x, 2, "moe_experts", "x");
  MF_CHECK(out.shape() == x.shape(), ShapeError, "[moe_experts] out ",
           format::shape_string(out.shape()), " must match x ", format::shape_string(x.shape()));
  const std::int64_t T = x.dim(0), H = x.dim(1);
  const auto slots = static_cast<std::size_t>(T * routing.k);
  MF_CHECK(routing.n_tokens == T && routing.k >= 1 && routing.experts.size() == slots &&
               routing.weights.size() == slots,
           ShapeError, "[moe_experts] routing of ", routing.n_tokens, " tokens with k = ", routing.k,
           " (", routing.experts.size(), " experts, ", routing.weights.size(),
           " weights) does not fit x ", format::shape_string(x.shape()), "; expected [T, k] of each");
  MF_CHECK(experts.size() == routing.unique.size(), ShapeError, "[moe_experts] ", experts.size(),
           " expert weight sets for ", routing.unique.size(), " unique experts; pass one per entry");
  for (std::size_t e = 1; e < routing.unique.size(); ++e) {
    MF_CHECK(routing.unique[e - 1] < routing.unique[e], ShapeError,
             "[moe_experts] routing.unique must be strictly ascending; found ", routing.unique[e - 1],
             " before ", routing.unique[e]);
  }
  std::vector<ExpertRefs> refs;  // every expert checked before any is computed
  refs.reserve(experts.size());
  for (std::size_t e = 0; e < experts.size(); ++e) {
    const std::int32_t id = routing.unique[e];
    MF_CHECK(experts[e].gate.shape.size() == 2, ShapeError, "[moe_experts] expert ", id,
             " gate has shape ", format::shape_string(experts[e].gate.shape), "; expected [I, ", H, "]");
    const std::int64_t I = experts[e].gate.shape[0];
    refs.push_back({expert_tensor(experts[e].gate, {I, H}, id, "gate"),
                    expert_tensor(experts[e].up, {I, H}, id, "up"),
                    expert_tensor(experts[e].down, {H, I}, id, "down")});
  }
  check_disjoint(x, out, "moe_experts", "x");
  const float* xs = data_of(x, "moe_experts", "x");
  float* o = data_of(out, "moe_experts", "out");

  if (!accumulate) std::fill_n(o, T * H, 0.0f);
  MatmulContext context = matmul_context();
  std::vector<std::int64_t> tokens;
  std::vector<float> weights;
  for (std::size_t e = 0; e < experts.size(); ++e) {
    tokens.clear();
    weights.clear();
    for (std::size_t s = 0; s < slots; ++s) {
      if (routing.experts[s] != routing.unique[e]) continue;
      tokens.push_back(static_cast<std::int64_t>(s / static_cast<std::size_t>(routing.k)));
      weights.push_back(routing.weights[s]);
    }
    if (tokens.empty()) continue;
    const ExpertRefs expert{aligned(refs[e].gate, moe_scratch_.gate_w),
                            aligned(refs[e].up, moe_scratch_.up_w),
                            aligned(refs[e].down, moe_scratch_.down_w)};
    moe_expert_accumulate(xs, H, tokens, weights, expert, moe_scratch_, context, o);
  }
}

}  // namespace moeflux::backend::cpu
