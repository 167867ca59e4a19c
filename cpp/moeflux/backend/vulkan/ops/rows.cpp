// Row copies: embedding (rows of a table by token id, widened exactly) and write_rows (K/V cache
// appends). Tables larger than one binding are bound a window of rows at a time.
#include <algorithm>

#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/backend/vulkan/ops/tensor_access.h"
#include "moeflux/backend/vulkan/vulkan_backend.h"
#include "moeflux/util/error.h"
#include "params/embedding.h"
#include "params/write_rows.h"

namespace moeflux::backend::vk {

void VulkanBackend::embedding(const Tensor& table, std::span<const std::int32_t> ids, Tensor& out) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  cpu::check_rank(table, 2, "embedding", "table");
  cpu::check_rank(out, 2, "embedding", "out");
  storage_of(table, ctx, "embedding", "table");
  f32_storage_of(out, ctx, "embedding", "out");
  const std::int64_t V = table.dim(0), H = table.dim(1), T = static_cast<std::int64_t>(ids.size());
  MF_CHECK(out.dim(0) == T && out.dim(1) == H, ShapeError, "[embedding] out has shape ",
           format::shape_string(out.shape()), " but ", T, " ids into a table of shape ",
           format::shape_string(table.shape()), " give [", T, ", ", H, "]");
  for (std::size_t t = 0; t < ids.size(); ++t) {
    MF_CHECK(ids[t] >= 0 && ids[t] < V, ShapeError, "[embedding] token id ", ids[t], " at position ", t,
             " is outside the vocabulary [0, ", V, "); check the tokenizer against the model");
  }
  cpu::check_disjoint(table, out, "embedding", "the table");
  if (T == 0 || H == 0) return;
  if (table.quantized()) return embedding_quantized(table, ids, out);  // ops/quantized.cpp

  const Pipeline& pipeline = ctx.pipelines.get(variant("embedding", table.dtype()));
  const Binding ids_binding = ctx.recorder.stage(std::as_bytes(ids));
  const std::int64_t table_rows = rows_per_binding(H * static_cast<std::int64_t>(element_bytes(table.dtype())), dev, "embedding");
  const std::int64_t out_rows = rows_per_binding(H * 4, dev, "embedding");
  for (std::int64_t t0 = 0; t0 < T; t0 += out_rows) {
    const std::int64_t tn = std::min(out_rows, T - t0);
    const Window o = window(out, t0 * H, tn * H, dev);
    for (std::int64_t r0 = 0; r0 < V; r0 += table_rows) {  // each dispatch copies the ids in its window
      const std::int64_t rn = std::min(table_rows, V - r0);
      const Window tw = window(table, r0 * H, rn * H, dev);
      const params::EmbeddingParams p{tw.first, static_cast<std::uint32_t>(t0), o.first, static_cast<std::uint32_t>(tn),
                                      static_cast<std::uint32_t>(H), static_cast<std::uint32_t>(r0),
                                      static_cast<std::uint32_t>(rn)};
      ctx.recorder.dispatch(pipeline, {tw.binding, ids_binding}, {o.binding}, p,
                            {groups_for(H, pipeline.spec.local_size, dev), groups_for(tn, 1, dev, 1)});
    }
  }
}

void VulkanBackend::write_rows(const Tensor& src, Tensor& dst, std::int64_t first_row) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  MF_CHECK(src.rank() >= 1 && dst.rank() >= 1, ShapeError, "[write_rows] src ", format::shape_string(src.shape()),
           " and dst ", format::shape_string(dst.shape()), " need a row axis");
  f32_storage_of(src, ctx, "write_rows", "src");
  f32_storage_of(dst, ctx, "write_rows", "dst");
  const std::int64_t T = src.dim(0), capacity = dst.dim(0);
  const std::int64_t row = T == 0 ? 0 : src.numel() / T;
  const std::int64_t dst_row = capacity == 0 ? 0 : dst.numel() / capacity;
  MF_CHECK(T == 0 || row == dst_row, ShapeError, "[write_rows] rows of src ", format::shape_string(src.shape()),
           " and dst ", format::shape_string(dst.shape()), " hold different numbers of elements");
  MF_CHECK(first_row >= 0 && first_row + T <= capacity, ShapeError, "[write_rows] rows [", first_row, ", ",
           first_row + T, ") do not fit in dst ", format::shape_string(dst.shape()),
           "; grow the cache or start a new sequence");
  if (T == 0 || row == 0) return;
  if (cpu::overlaps(src, dst.rows(first_row, T))) {  // a shader copy would race: go through a copy of src
    Tensor copy = empty(src.shape());
    write_rows(src, copy, 0);
    write_rows(copy, dst, first_row);
    return;
  }
  // A plain copy of T * row contiguous elements, in pieces one binding can hold.
  const Pipeline& pipeline = ctx.pipelines.get("write_rows_f32");
  const std::int64_t n = T * row, piece = rows_per_binding(4, dev, "write_rows");
  for (std::int64_t i0 = 0; i0 < n; i0 += piece) {
    const std::int64_t count = std::min(piece, n - i0);
    const Window s = window(src, i0, count, dev);
    const Window d = window(dst, first_row * row + i0, count, dev);
    const params::WriteRowsParams p{s.first, d.first, static_cast<std::uint32_t>(count)};
    ctx.recorder.dispatch(pipeline, {s.binding}, {d.binding}, p, {groups_for(count, pipeline.spec.local_size, dev)});
  }
}

}  // namespace moeflux::backend::vk
