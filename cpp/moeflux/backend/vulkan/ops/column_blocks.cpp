// copy_column_blocks (shaders/copy_column_blocks.comp): the column splits of the hybrid's
// interleaved projections, exact copies, cut into row windows.
#include <algorithm>

#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/backend/op_checks.h"
#include "moeflux/backend/vulkan/ops/tensor_access.h"
#include "moeflux/backend/vulkan/vulkan_backend.h"
#include "moeflux/util/error.h"
#include "params/copy_column_blocks.h"

namespace moeflux::backend::vk {

void VulkanBackend::copy_column_blocks(const Tensor& src, const ColumnBlocks& blocks, Tensor& dst) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  f32_storage_of(src, ctx, "copy_column_blocks", "src");
  f32_storage_of(dst, ctx, "copy_column_blocks", "dst");
  check_column_blocks(src, blocks, dst);
  const std::int64_t T = src.dim(0), C = dst.dim(1);
  const std::int64_t src_cols = T == 0 ? 0 : src.numel() / T;
  const auto& b = blocks;
  if (T == 0 || b.width == 0) return;
  const Pipeline& pipeline = ctx.pipelines.get("copy_column_blocks_f32");
  const std::int64_t rows = std::min(rows_per_binding(src_cols * 4, dev, "copy_column_blocks"),
                                     rows_per_binding(C * 4, dev, "copy_column_blocks"));
  for (std::int64_t t0 = 0; t0 < T; t0 += rows) {
    const std::int64_t n = std::min(rows, T - t0);
    const Window sw = window(src, t0 * src_cols, n * src_cols, dev), dw = window(dst, t0 * C, n * C, dev);
    const auto u32 = [](std::int64_t v) { return static_cast<std::uint32_t>(v); };
    const params::CopyColumnBlocksParams p{sw.first,       dw.first,       u32(n),       u32(b.groups), u32(b.group_stride),
                                           u32(b.src_col), u32(b.width),   u32(b.dst_col), u32(src_cols), u32(C)};
    ctx.recorder.dispatch(pipeline, {sw.binding}, {dw.binding}, p,
                          {groups_for(n * b.groups * b.width, pipeline.spec.local_size, dev)});
  }
}

}  // namespace moeflux::backend::vk
