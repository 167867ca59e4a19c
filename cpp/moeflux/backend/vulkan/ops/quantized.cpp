// Quantized weights (q8/q4/q3/q2). matmul: few rows of x (decode) take matmul_vec_q, one subgroup
// per weight row where the device has subgroup arithmetic, or for matrices with many rows
// matmul_vec_q_quads (two rows per subgroup read by quads); more take matmul_tiled_q, which
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

constexpr std::int64_t kVecMaxT = 8;     // MAX_T of matmul_vec_q.comp and matmul_vec_q_quads.comp
constexpr std::int64_t kQuadRows = 2;    // ROWS of matmul_vec_q_quads.comp: rows per subgroup
// matmul_vec_q_quads streams large matrices faster (1.6 TB/s against 0.9 for a 311 MB LM head on an
// H200) but leaves a GPU underused below this many subgroups, where matmul_vec_q's row per
// subgroup is faster (a 4096-row q projection: 11.6 against 18.4 us; docs/BENCHMARKS.md).
constexpr std::int64_t kQuadMinTeams = 8192;
constexpr std::int64_t kTile = 64;     // TILE of common/tile_matmul.glsl: rows of x per workgroup
constexpr std::int64_t kTileN = 128;   // WR of common/tile_matmul.glsl: rows of w per workgroup

// Whether T rows of x times `rows` rows of a quantized w (one dispatch) take matmul_vec_q_quads.
bool quads_fit(bool subgroups, std::int64_t T, std::int64_t rows) {
  return subgroups && T <= kVecMaxT && rows / kQuadRows >= kQuadMinTeams;
}

}  // namespace

bool VulkanBackend::quantized_matvec_takes_quads(std::int64_t T, const Tensor& w) const {
  const Device& dev = context_->device;
  const std::int64_t n_rows = quant_rows_per_binding(format::quant_layout(w.shape(), w.quant()), dev, "matmul");
  return quads_fit(dev.features().subgroup_arithmetic, T, std::min(w.dim(0), n_rows));
}

void VulkanBackend::matmul_quantized(const Tensor& x, const Tensor& w, Tensor& y, bool accumulate,
                                     const InputNorm* norm) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  const std::int64_t T = x.dim(0), K = x.dim(1), N = w.dim(0);
  const format::QuantLayout layout = format::quant_layout(w.shape(), w.quant());
  const bool sg = dev.features().subgroup_arithmetic;
  // With `norm` (norm_fits_matvec): matmul_vec_q_norm, x's norm weight bound after w.
  const Pipeline& vec = ctx.pipelines.get(norm != nullptr ? norm_variant("matmul_vec_q_norm", w.dtype(), norm->weight.dtype())
                                                          : variant("matmul_vec_q", w.dtype(), sg));
  const Window gw = norm != nullptr ? whole(norm->weight, dev) : Window{};  // bound only with norm
  const Pipeline& tiled = ctx.pipelines.get(variant("matmul_tiled_q", w.dtype()));
  // matmul_vec_q gives each subgroup a row, matmul_vec_q_quads kQuadRows (the shaders stride over
  // rows, so a guess is enough).
  const std::uint32_t subgroup = std::max(1u, dev.features().subgroup_size);
  const std::int64_t vec_rows = sg ? std::max<std::uint32_t>(1, vec.spec.local_size / subgroup) : 1;
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
                                    accumulate ? 1u : 0u,
                                    gw.first,
                                    norm != nullptr ? norm->options.eps : 0.0f,
                                    norm != nullptr && norm->options.zero_centered ? 1u : 0u};
      if (norm != nullptr) {
        ctx.recorder.dispatch(vec, {xw.binding, ww.q.binding, ww.s.binding, ww.b.binding, gw.binding}, {yw.binding},
                              p, {groups_for(nn, vec_rows, dev)});
      } else if (quads_fit(sg, tn, nn)) {
        const Pipeline& quads = ctx.pipelines.get(variant("matmul_vec_q_quads", w.dtype(), true));
        ctx.recorder.dispatch(quads, {xw.binding, ww.q.binding, ww.s.binding, ww.b.binding}, {yw.binding}, p,
                              {groups_for(nn, kQuadRows * vec_rows, dev)});
      } else if (tn <= kVecMaxT) {
        ctx.recorder.dispatch(vec, {xw.binding, ww.q.binding, ww.s.binding, ww.b.binding}, {yw.binding}, p,
                              {groups_for(nn, vec_rows, dev)});
      } else {
        ctx.recorder.dispatch(tiled, {xw.binding, ww.q.binding, ww.s.binding, ww.b.binding}, {yw.binding}, p,
                              {groups_for(nn, kTileN, dev, 0), groups_for(tn, kTile, dev, 1)});
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
