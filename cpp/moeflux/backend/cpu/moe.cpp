// moe_experts: the routed experts of a MoE block, as transformers' Qwen3MoeSparseMoeBlock loop:
// out starts at zero; for each chosen expert in ascending order, its tokens' rows are gathered,
// run through down(silu(gate x) * up x), and out[token] += y * weight. f16/bf16 experts are
// widened to float32 scratch first.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "moeflux/backend/cpu/cpu_backend.h"
#include "moeflux/backend/cpu/kernels.h"
#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/format/dtype.h"
#include "moeflux/util/error.h"

namespace moeflux::backend::cpu {
namespace {

void check_expert_tensor(const format::TensorView& view, const Shape& expected, std::int32_t expert,
                         const char* role) {
  MF_CHECK(view.shape == expected, ShapeError, "[moe_experts] expert ", expert, " ", role, " '",
           view.name, "' has shape ", format::shape_string(view.shape), "; expected ",
           format::shape_string(expected));
  const std::size_t needed =
      static_cast<std::size_t>(view.numel()) * format::dtype_size(view.dtype);
  MF_CHECK(view.nbytes >= needed && (view.data != nullptr || needed == 0), FormatError,
           "[moe_experts] expert ", expert, " ", role, " '", view.name, "' holds ",
           view.data == nullptr ? 0 : view.nbytes, " bytes; ", format::dtype_name(view.dtype), " ",
           format::shape_string(view.shape), " needs ", needed);
}

// The weight as float32: the stored bytes when they already are aligned float32, else `scratch`.
const float* as_f32(const format::TensorView& view, AlignedBuffer& scratch) {
  const auto count = static_cast<std::size_t>(view.numel());
  if (view.dtype == Dtype::f32 && reinterpret_cast<std::uintptr_t>(view.data) % alignof(float) == 0) {
    return reinterpret_cast<const float*>(view.data);
  }
  float* dst = scratch.reserve(view.numel());
  if (count > 0) format::to_f32(view.data, view.dtype, count, dst);
  return dst;
}

}  // namespace

void moe_expert_accumulate(const float* x, std::int64_t hidden, std::span<const std::int64_t> tokens,
                           std::span<const float> weights, const ExpertF32& expert,
                           MoeScratch& scratch, float* out) {
  const auto M = static_cast<std::int64_t>(tokens.size());
  const std::int64_t I = expert.intermediate;
  float* xs = scratch.x.reserve(M * hidden);
  for (std::int64_t r = 0; r < M; ++r) {
    std::copy_n(x + tokens[static_cast<std::size_t>(r)] * hidden, hidden, xs + r * hidden);
  }
  float* gate = scratch.gate.reserve(M * I);
  float* up = scratch.up.reserve(M * I);
  cpu::matmul(xs, expert.gate, M, hidden, I, gate);
  cpu::matmul(xs, expert.up, M, hidden, I, up);
  cpu::swiglu(gate, up, M * I, gate);
  float* y = scratch.y.reserve(M * hidden);
  cpu::matmul(gate, expert.down, M, I, hidden, y);
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
  for (std::size_t e = 0; e < experts.size(); ++e) {
    MF_CHECK(experts[e].gate.shape.size() == 2, ShapeError, "[moe_experts] expert ",
             routing.unique[e], " gate has shape ", format::shape_string(experts[e].gate.shape),
             "; expected [I, ", H, "]");
    const std::int64_t I = experts[e].gate.shape[0];
    check_expert_tensor(experts[e].gate, {I, H}, routing.unique[e], "gate");
    check_expert_tensor(experts[e].up, {I, H}, routing.unique[e], "up");
    check_expert_tensor(experts[e].down, {H, I}, routing.unique[e], "down");
  }
  check_disjoint(x, out, "moe_experts", "x");
  const float* xs = data_of(x, "moe_experts", "x");
  float* o = data_of(out, "moe_experts", "out");

  if (!accumulate) std::fill_n(o, T * H, 0.0f);
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
    const ExpertWeights& w = experts[e];
    const ExpertF32 expert{as_f32(w.gate, moe_scratch_.gate_w), as_f32(w.up, moe_scratch_.up_w),
                           as_f32(w.down, moe_scratch_.down_w), w.gate.shape[0]};
    moe_expert_accumulate(xs, H, tokens, weights, expert, moe_scratch_, o);
  }
}

}  // namespace moeflux::backend::cpu
