// Row copies: embedding (gather rows of a table by token id, widened exactly from f16, bf16 or
// quantized tables), write_rows (append K/V rows to a cache) and copy_column_blocks (split
// interleaved projections). All are exact.
#include <algorithm>
#include <cstring>

#include "moeflux/backend/cpu/cpu_backend.h"
#include "moeflux/backend/cpu/kernels.h"
#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/backend/cpu/weight.h"
#include "moeflux/backend/op_checks.h"
#include "moeflux/util/error.h"

namespace moeflux::backend::cpu {

void embedding(const float* table, std::int64_t cols, std::span<const std::int32_t> ids, float* out) {
  for (std::size_t t = 0; t < ids.size(); ++t) {
    std::copy_n(table + ids[t] * cols, cols, out + static_cast<std::int64_t>(t) * cols);
  }
}

void CpuBackend::embedding(const Tensor& table, std::span<const std::int32_t> ids, Tensor& out) {
  check_rank(table, 2, "embedding", "table");
  check_rank(out, 2, "embedding", "out");
  const std::int64_t V = table.dim(0);
  const std::int64_t H = table.dim(1);
  MF_CHECK(out.dim(0) == static_cast<std::int64_t>(ids.size()) && out.dim(1) == H, ShapeError,
           "[embedding] out has shape ", format::shape_string(out.shape()), " but ", ids.size(),
           " ids into a table of shape ", format::shape_string(table.shape()), " give [",
           ids.size(), ", ", H, "]");
  for (std::size_t t = 0; t < ids.size(); ++t) {
    MF_CHECK(ids[t] >= 0 && ids[t] < V, ShapeError, "[embedding] token id ", ids[t], " at position ",
             t, " is outside the vocabulary [0, ", V, "); check the tokenizer against the model");
  }
  check_disjoint(table, out, "embedding", "the table");
  const WeightRef w = weight_ref(table, "embedding", "table");
  float* o = data_of(out, "embedding", "out");
  if (w.dtype == Dtype::f32) {
    cpu::embedding(reinterpret_cast<const float*>(w.data), H, ids, o);
    return;
  }
  for (std::size_t t = 0; t < ids.size(); ++t) widen_rows(w, ids[t], 1, o + static_cast<std::int64_t>(t) * H);
}

void CpuBackend::write_rows(const Tensor& src, Tensor& dst, std::int64_t first_row) {
  MF_CHECK(src.rank() >= 1 && dst.rank() >= 1, ShapeError, "[write_rows] src ",
           format::shape_string(src.shape()), " and dst ", format::shape_string(dst.shape()),
           " need a row axis");
  const std::int64_t T = src.dim(0);
  const std::int64_t capacity = dst.dim(0);
  const std::int64_t row = T == 0 ? 0 : src.numel() / T;
  const std::int64_t dst_row = capacity == 0 ? 0 : dst.numel() / capacity;
  MF_CHECK(T == 0 || row == dst_row, ShapeError, "[write_rows] rows of src ",
           format::shape_string(src.shape()), " and dst ", format::shape_string(dst.shape()),
           " hold different numbers of elements");
  MF_CHECK(first_row >= 0 && first_row + T <= capacity, ShapeError, "[write_rows] rows [",
           first_row, ", ", first_row + T, ") do not fit in dst ", format::shape_string(dst.shape()),
           "; grow the cache or start a new sequence");
  const float* s = data_of(src, "write_rows", "src");
  float* d = data_of(dst, "write_rows", "dst");
  // memmove: src may be a view of the same cache.
  if (T > 0) std::memmove(d + first_row * row, s, static_cast<std::size_t>(T * row) * sizeof(float));
}

void CpuBackend::copy_column_blocks(const Tensor& src, const ColumnBlocks& blocks, Tensor& dst) {
  const char* op = "copy_column_blocks";
  check_column_blocks(src, blocks, dst);
  const std::int64_t T = src.dim(0), C = dst.dim(1);
  const std::int64_t src_cols = T == 0 ? 0 : src.numel() / T;
  const auto& b = blocks;
  const float* s = data_of(src, op, "src");
  float* d = data_of(dst, op, "dst");
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t g = 0; g < b.groups; ++g)
      std::copy_n(s + t * src_cols + g * b.group_stride + b.src_col, b.width, d + t * C + b.dst_col + g * b.width);
}

}  // namespace moeflux::backend::cpu
