// matmul: y = x w^T with f32/f16/bf16 weights. Few rows of x (decode): matmul_vec, a workgroup
// per weight row (with subgroups) or pair of rows; more: matmul_tiled. A weight larger than one
// storage binding (an LM head on lavapipe's 128 MiB) is split into row ranges, one dispatch each.
#include <algorithm>
#include <string>
#include <vector>

#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/backend/vulkan/ops/tensor_access.h"
#include "moeflux/backend/vulkan/vulkan_backend.h"
#include "moeflux/util/error.h"
#include "params/matmul.h"

namespace moeflux::backend::vk {
namespace {

constexpr std::int64_t kVecMaxT = 8;    // MAX_T of matmul_vec.comp
constexpr std::int64_t kVecRows = 2;    // ROWS of matmul_vec.comp
constexpr std::int64_t kTile = 64;      // TILE of matmul_tiled.comp

}  // namespace

void VulkanBackend::matmul(const Tensor& x, const Tensor& w, Tensor& y) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  cpu::check_rank(x, 2, "matmul", "x");
  cpu::check_rank(w, 2, "matmul", "w");
  cpu::check_rank(y, 2, "matmul", "y");
  f32_storage_of(x, ctx, "matmul", "x");
  storage_of(w, ctx, "matmul", "w");
  f32_storage_of(y, ctx, "matmul", "y");
  const std::int64_t T = x.dim(0), K = x.dim(1), N = w.dim(0);
  MF_CHECK(w.dim(1) == K && y.dim(0) == T && y.dim(1) == N, ShapeError, "[matmul] x ",
           format::shape_string(x.shape()), " times w^T with w ", format::shape_string(w.shape()), " into y ",
           format::shape_string(y.shape()), "; expected x [T, K], w [N, K], y [T, N]");
  cpu::check_disjoint(x, y, "matmul", "x");
  cpu::check_disjoint(w, y, "matmul", "w");
  if (T == 0 || N == 0) return;
  if (w.quantized()) return matmul_quantized(x, w, y);  // ops/quantized.cpp
  if (K == 0) {  // an empty sum
    const std::vector<float> zeros(static_cast<std::size_t>(T * N), 0.0f);
    upload(zeros, y);
    return;
  }

  const bool sg = dev.features().subgroup_arithmetic;
  const std::string vec = variant("matmul_vec", w.dtype(), sg), tiled = variant("matmul_tiled", w.dtype());
  // Row ranges such that every binding fits: x and y by rows of T, w by rows of N.
  const std::int64_t t_rows = rows_per_binding(std::max(K, N) * 4, dev, "matmul");
  const std::int64_t n_rows = rows_per_binding(K * static_cast<std::int64_t>(element_bytes(w.dtype())), dev, "matmul");
  for (std::int64_t t0 = 0; t0 < T; t0 += t_rows) {
    const std::int64_t tn = std::min(t_rows, T - t0);
    const Window xw = window(x, t0 * K, tn * K, dev);
    for (std::int64_t n0 = 0; n0 < N; n0 += n_rows) {
      const std::int64_t nn = std::min(n_rows, N - n0);
      const Window ww = window(w, n0 * K, nn * K, dev);
      const Window yw = window(y, t0 * N + n0, (tn - 1) * N + nn, dev);
      const params::MatmulParams p{xw.first, ww.first, yw.first, static_cast<std::uint32_t>(tn),
                                   static_cast<std::uint32_t>(K), static_cast<std::uint32_t>(nn),
                                   static_cast<std::uint32_t>(N)};
      if (tn <= kVecMaxT) {
        const Pipeline& pipeline = ctx.pipelines.get(vec);
        // The subgroup variant gives each workgroup a row.
        const std::int64_t rows = sg ? 1 : kVecRows;
        ctx.recorder.dispatch(pipeline, {xw.binding, ww.binding}, {yw.binding}, p, {groups_for(nn, rows, dev)});
      } else {
        ctx.recorder.dispatch(ctx.pipelines.get(tiled), {xw.binding, ww.binding}, {yw.binding}, p,
                              {groups_for(nn, kTile, dev, 0), groups_for(tn, kTile, dev, 1)});
      }
    }
  }
}

}  // namespace moeflux::backend::vk
