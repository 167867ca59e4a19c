// matmul_many: y_i = x w_i^T for weights sharing x. A decode step's q, k and v projections as one
// dispatch of matmul_vec_q_many instead of three of matmul_vec_q, whose fixed cost dominates at
// these sizes: when 2 to 4 quantized weights share one form (dtype, group size, scale dtype, K)
// and T is at most its MAX_T. The weights are read by device address (no binding limits, so no
// row ranges); anything else takes one matmul per weight.
#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <vector>

#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/backend/vulkan/ops/tensor_access.h"
#include "moeflux/backend/vulkan/vulkan_backend.h"
#include "moeflux/util/error.h"
#include "params/matmul_vec_q_many.h"

namespace moeflux::backend::vk {
namespace {

constexpr std::size_t kManyWeights = 4;  // weight slots of matmul_vec_q_many.comp
constexpr std::int64_t kVecMaxT = 8;     // its MAX_T

bool same_form(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.quant().group_size == b.quant().group_size &&
         a.quant().scale_dtype == b.quant().scale_dtype;
}

// True when matmul_vec_q_many can run the call: otherwise one matmul per weight (which also
// reports any bad argument).
bool fusable(const Tensor& x, std::span<const Tensor* const> weights, std::span<Tensor* const> ys,
             const Device& dev) {
  if (weights.size() < 2 || weights.size() > kManyWeights || weights.size() != ys.size()) return false;
  if (x.rank() != 2 || x.dtype() != Dtype::f32 || x.dim(0) < 1 || x.dim(0) > kVecMaxT) return false;
  if (sizeof(params::MatmulVecQManyParams) > dev.limits().max_push_constants) return false;
  const std::int64_t T = x.dim(0), K = x.dim(1);
  // x and every y_i bound whole.
  const auto usable = static_cast<std::int64_t>(dev.limits().max_storage_range - dev.limits().storage_alignment - 4);
  if (T * K * 4 > usable) return false;
  std::int64_t rows = 0;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    const Tensor& w = *weights[i];
    const Tensor& y = *ys[i];
    if (!w.defined() || !y.defined() || !w.quantized() || w.rank() != 2 || !same_form(w, *weights[0])) return false;
    if (w.dim(1) != K || w.dim(0) < 1 || y.rank() != 2 || y.dtype() != Dtype::f32 || y.dim(0) != T ||
        y.dim(1) != w.dim(0)) {
      return false;
    }
    const format::QuantLayout layout = format::quant_layout(w.shape(), w.quant());
    // 16-bit indices of the scales and biases, from the block's address, in 32 bits.
    if (layout.weights_offset != 0 || layout.biases_offset / 2 + static_cast<std::uint64_t>(layout.groups_per_row) * w.dim(0) >
                                          std::numeric_limits<std::uint32_t>::max()) {
      return false;
    }
    if (T * w.dim(0) * 4 > usable) return false;
    rows += w.dim(0);
  }
  return rows <= std::numeric_limits<std::uint32_t>::max();
}

}  // namespace

void VulkanBackend::matmul_many(const Tensor& x, std::span<const Tensor* const> weights, std::span<Tensor* const> ys) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  if (!fusable(x, weights, ys, dev)) return Backend::matmul_many(x, weights, ys);
  f32_storage_of(x, ctx, "matmul_many", "x");
  for (std::size_t i = 0; i < weights.size(); ++i) {
    storage_of(*weights[i], ctx, "matmul_many", "w");
    f32_storage_of(*ys[i], ctx, "matmul_many", "y");
    cpu::check_disjoint(x, *ys[i], "matmul_many", "x");
    for (std::size_t j = 0; j < i; ++j) cpu::check_disjoint(*ys[j], *ys[i], "matmul_many", "an earlier y");
  }
  const std::int64_t T = x.dim(0), K = x.dim(1);
  if (K == 0) return Backend::matmul_many(x, weights, ys);  // empty sums: matmul writes the zeros

  const Tensor& w0 = *weights[0];
  const format::QuantLayout layout0 = format::quant_layout(w0.shape(), w0.quant());
  params::MatmulVecQManyParams p{};
  const Window xw = window(x, 0, T * K, dev);
  p.x_offset = xw.first;
  p.T = static_cast<std::uint32_t>(T);
  p.K = static_cast<std::uint32_t>(K);
  p.row_words = static_cast<std::uint32_t>(layout0.row_bytes / 4);
  p.groups = static_cast<std::uint32_t>(layout0.groups_per_row);
  p.group_size = static_cast<std::uint32_t>(w0.quant().group_size);
  p.scale_bf16 = w0.quant().scale_dtype == Dtype::bf16 ? 1u : 0u;

  // Slot i's fields; an unused slot keeps N = 0 and binds y_0 again (the shader never writes it).
  std::array<Window, kManyWeights> yw{};
  std::vector<Binding> read_by_address;
  struct Slot {
    std::uint32_t *address_lo, *address_hi, *s_first, *b_first, *N, *y_offset;
  };
  const std::array<Slot, kManyWeights> slots{{
      {&p.address0_lo, &p.address0_hi, &p.s_first0, &p.b_first0, &p.N0, &p.y_offset0},
      {&p.address1_lo, &p.address1_hi, &p.s_first1, &p.b_first1, &p.N1, &p.y_offset1},
      {&p.address2_lo, &p.address2_hi, &p.s_first2, &p.b_first2, &p.N2, &p.y_offset2},
      {&p.address3_lo, &p.address3_hi, &p.s_first3, &p.b_first3, &p.N3, &p.y_offset3},
  }};
  std::int64_t rows = 0;
  for (std::size_t i = 0; i < kManyWeights; ++i) {
    if (i >= weights.size()) {
      yw[i] = yw[0];
      continue;
    }
    const Tensor& w = *weights[i];
    const std::int64_t N = w.dim(0);
    const format::QuantLayout layout = format::quant_layout(w.shape(), w.quant());
    const Allocation& a = static_cast<const VulkanStorage*>(w.storage())->allocation();
    const VkDeviceAddress address = a.address();
    MF_ASSERT(address % 4 == 0, "[matmul_many] a quantized weight at device address ", address);
    *slots[i].address_lo = static_cast<std::uint32_t>(address);
    *slots[i].address_hi = static_cast<std::uint32_t>(address >> 32);
    *slots[i].s_first = static_cast<std::uint32_t>(layout.scales_offset / 2);
    *slots[i].b_first = static_cast<std::uint32_t>(layout.biases_offset / 2);
    *slots[i].N = static_cast<std::uint32_t>(N);
    yw[i] = window(*ys[i], 0, T * N, dev);
    *slots[i].y_offset = yw[i].first;
    read_by_address.push_back({a.block, a.offset, a.size});
    rows += N;
  }

  const bool sg = dev.features().subgroup_arithmetic;
  const Pipeline& pipeline = ctx.pipelines.get(variant("matmul_vec_q_many", w0.dtype(), sg));
  // A team per row: a subgroup, else the workgroup (the shader strides over rows, so a guess is enough).
  const std::uint32_t subgroup = std::max(1u, dev.features().subgroup_size);
  const std::int64_t team_rows = sg ? std::max<std::uint32_t>(1, pipeline.spec.local_size / subgroup) : 1;
  ctx.recorder.note_reads(read_by_address);
  ctx.recorder.dispatch(pipeline, {xw.binding}, {yw[0].binding, yw[1].binding, yw[2].binding, yw[3].binding}, p,
                        {groups_for(rows, team_rows, dev)});
}

}  // namespace moeflux::backend::vk
