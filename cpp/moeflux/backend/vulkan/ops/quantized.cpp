// Quantized weights (q8/q4/q3/q2). matmul: few rows of x (decode) take matmul_vec_q, one subgroup
// per weight row where the device has subgroup arithmetic; more take matmul_tiled_q, which
// dequantizes tiles of w into shared memory. embedding: rows dequantized exactly (embedding_q).
// Weights larger than one binding go in row ranges, their three sections as windows.
#include <algorithm>
#include <string>

#include "moeflux/backend/vulkan/ops/quant_access.h"
#include "moeflux/backend/vulkan/vulkan_backend.h"
#include "params/embedding_q.h"
#include "params/matmul_q.h"

namespace moeflux::backend::vk {
namespace {

constexpr std::int64_t kVecMaxT = 8;   // MAX_T of matmul_vec_q.comp
constexpr std::int64_t kVecRows = 2;   // ROWS of matmul_vec_q.comp: rows per team
constexpr std::int64_t kStagedFloats = 6144;  // X_FLOATS of matmul_vec_q_staged.comp
constexpr std::uint32_t kStagedShared = kStagedFloats / 32 * 9 * 16;  // its shared memory, bytes
constexpr std::int64_t kStagedMaxRows = 4;    // MAX_ROWS of matmul_vec_q_staged.comp
// Subgroups a dispatch should keep busy before one takes several rows (enough for a large GPU's
// compute units to hold several each).
constexpr std::int64_t kStagedTeams = 1024;
constexpr std::int64_t kTile = 64;     // TILE of matmul_tiled_q.comp

}  // namespace

void VulkanBackend::matmul_quantized(const Tensor& x, const Tensor& w, Tensor& y) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  const std::int64_t T = x.dim(0), K = x.dim(1), N = w.dim(0);
  const format::QuantLayout layout = format::quant_layout(w.shape(), w.quant());
  const bool sg = dev.features().subgroup_arithmetic;
  const Pipeline& vec = ctx.pipelines.get(variant("matmul_vec_q", w.dtype(), sg));
  const bool can_stage = sg && dev.limits().max_shared_memory >= kStagedShared;
  const Pipeline* staged = can_stage ? &ctx.pipelines.get(variant("matmul_vec_q_staged", w.dtype(), true)) : nullptr;
  const Pipeline& tiled = ctx.pipelines.get(variant("matmul_tiled_q", w.dtype()));
  // matmul_vec_q gives each team (subgroup) kVecRows rows (the shader strides over rows, so a guess
  // is enough).
  const std::uint32_t subgroup = std::max(1u, dev.features().subgroup_size);
  const std::int64_t vec_rows = kVecRows * (sg ? std::max<std::uint32_t>(1, vec.spec.local_size / subgroup) : 1);
  const std::int64_t t_rows = rows_per_binding(std::max(K, N) * 4, dev, "matmul");
  const std::int64_t n_rows = quant_rows_per_binding(layout, dev, "matmul");
  for (std::int64_t t0 = 0; t0 < T; t0 += t_rows) {
    const std::int64_t tn = std::min(t_rows, T - t0);
    const Window xw = window(x, t0 * K, tn * K, dev);
    for (std::int64_t n0 = 0; n0 < N; n0 += n_rows) {
      const std::int64_t nn = std::min(n_rows, N - n0);
      const QuantWindows ww = quant_windows(w, layout, n0, nn, dev);
      const Window yw = window(y, t0 * N + n0, (tn - 1) * N + nn, dev);
      const params::MatmulQParams p{xw.first,
                                    yw.first,
                                    static_cast<std::uint32_t>(tn),
                                    static_cast<std::uint32_t>(K),
                                    static_cast<std::uint32_t>(nn),
                                    static_cast<std::uint32_t>(N),
                                    ww.q.first,
                                    ww.s.first,
                                    ww.b.first,
                                    static_cast<std::uint32_t>(layout.row_bytes / 4),
                                    static_cast<std::uint32_t>(layout.groups_per_row),
                                    static_cast<std::uint32_t>(w.quant().group_size),
                                    w.quant().scale_dtype == Dtype::bf16 ? 1u : 0u,
                                    1u};
      if (staged && tn <= kVecMaxT && tn * K <= kStagedFloats) {
        // Wide loads of several rows per subgroup once there are enough rows to go round.
        const std::int64_t team_rows = std::clamp<std::int64_t>(nn / kStagedTeams, 1, kStagedMaxRows);
        params::MatmulQParams ps = p;
        ps.team_rows = static_cast<std::uint32_t>(team_rows);
        const std::int64_t per_group = team_rows * std::max<std::uint32_t>(1, staged->spec.local_size / subgroup);
        ctx.recorder.dispatch(*staged, {xw.binding, ww.q.binding, ww.s.binding, ww.b.binding}, {yw.binding}, ps,
                              {groups_for(nn, per_group, dev)});
      } else if (tn <= kVecMaxT) {
        ctx.recorder.dispatch(vec, {xw.binding, ww.q.binding, ww.s.binding, ww.b.binding}, {yw.binding}, p,
                              {groups_for(nn, vec_rows, dev)});
      } else {
        ctx.recorder.dispatch(tiled, {xw.binding, ww.q.binding, ww.s.binding, ww.b.binding}, {yw.binding}, p,
                              {groups_for(nn, kTile, dev, 0), groups_for(tn, kTile, dev, 1)});
      }
    }
  }
}

void VulkanBackend::embedding_quantized(const Tensor& table, std::span<const std::int32_t> ids, Tensor& out) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  const std::int64_t V = table.dim(0), H = table.dim(1), T = static_cast<std::int64_t>(ids.size());
  const format::QuantLayout layout = format::quant_layout(table.shape(), table.quant());
  const Pipeline& pipeline = ctx.pipelines.get(variant("embedding_q", table.dtype()));
  const Binding ids_binding = ctx.recorder.stage(std::as_bytes(ids));
  const std::int64_t table_rows = quant_rows_per_binding(layout, dev, "embedding");
  const std::int64_t out_rows = rows_per_binding(H * 4, dev, "embedding");
  for (std::int64_t t0 = 0; t0 < T; t0 += out_rows) {
    const std::int64_t tn = std::min(out_rows, T - t0);
    const Window o = window(out, t0 * H, tn * H, dev);
    for (std::int64_t r0 = 0; r0 < V; r0 += table_rows) {  // each dispatch copies the ids in its window
      const std::int64_t rn = std::min(table_rows, V - r0);
      const QuantWindows tw = quant_windows(table, layout, r0, rn, dev);
      const params::EmbeddingQParams p{tw.q.first,
                                       tw.s.first,
                                       tw.b.first,
                                       static_cast<std::uint32_t>(layout.row_bytes / 4),
                                       static_cast<std::uint32_t>(layout.groups_per_row),
                                       static_cast<std::uint32_t>(table.quant().group_size),
                                       table.quant().scale_dtype == Dtype::bf16 ? 1u : 0u,
                                       static_cast<std::uint32_t>(t0),
                                       o.first,
                                       static_cast<std::uint32_t>(tn),
                                       static_cast<std::uint32_t>(H),
                                       static_cast<std::uint32_t>(r0),
                                       static_cast<std::uint32_t>(rn)};
      ctx.recorder.dispatch(pipeline, {tw.q.binding, tw.s.binding, tw.b.binding, ids_binding}, {o.binding}, p,
                            {groups_for(H / 8, pipeline.spec.local_size, dev), groups_for(tn, 1, dev, 1)});
    }
  }
}

}  // namespace moeflux::backend::vk
