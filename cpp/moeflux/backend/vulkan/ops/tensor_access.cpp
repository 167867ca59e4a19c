// Tensor-to-binding helpers shared by the Vulkan ops.
#include "moeflux/backend/vulkan/ops/tensor_access.h"

#include <algorithm>

#include "moeflux/util/error.h"

namespace moeflux::backend::vk {

const VulkanStorage& storage_of(const Tensor& t, const Context& context, std::string_view op, std::string_view what) {
  MF_CHECK(t.defined(), ShapeError, "[", op, "] ", what, " is an undefined tensor; create it with empty() or resident()");
  const auto* s = dynamic_cast<const VulkanStorage*>(t.storage());
  MF_CHECK(s != nullptr && &s->context() == &context, Unsupported, "[", op, "] ", what,
           " belongs to another backend; pass tensors created by this vulkan backend");
  const auto elements = static_cast<VkDeviceSize>(t.offset() + t.numel());
  MF_ASSERT(t.quantized() || elements * element_bytes(t.dtype()) <= s->bytes(), "[", op, "] ", what, " at offset ",
            t.offset(), " with shape ", format::shape_string(t.shape()), " exceeds its storage");
  return *s;
}

const VulkanStorage& f32_storage_of(const Tensor& t, const Context& context, std::string_view op,
                                    std::string_view what) {
  const VulkanStorage& s = storage_of(t, context, op, what);
  MF_CHECK(t.dtype() == Dtype::f32, Unsupported, "[", op, "] ", what, " has dtype ", format::dtype_name(t.dtype()),
           "; the vulkan backend takes f32 here");
  return s;
}

std::size_t element_bytes(Dtype dtype) { return format::is_quantized(dtype) ? 1 : format::dtype_size(dtype); }

Binding byte_range(const Tensor& t, std::int64_t begin, std::int64_t count) {
  const auto* s = static_cast<const VulkanStorage*>(t.storage());
  const auto es = static_cast<VkDeviceSize>(element_bytes(t.dtype()));
  const Allocation& a = s->allocation();
  return {a.block, a.offset + static_cast<VkDeviceSize>(t.offset() + begin) * es, static_cast<VkDeviceSize>(count) * es};
}

Window byte_window(const Tensor& t, std::uint64_t begin, std::uint64_t bytes, std::uint32_t unit, const Device& device) {
  MF_ASSERT(bytes > 0, "an empty window");
  const Allocation& a = static_cast<const VulkanStorage*>(t.storage())->allocation();
  const VkDeviceSize start = a.offset + begin;
  const VkDeviceSize aligned = start - start % device.limits().storage_alignment;
  // Allocations are padded to their alignment, so rounding the end up to a word stays inside.
  const VkDeviceSize end = (start + bytes + 3) / 4 * 4;
  MF_ASSERT((start - aligned) % unit == 0, "a window at byte ", start, " in units of ", unit);
  return {{a.block, aligned, end - aligned}, static_cast<std::uint32_t>((start - aligned) / unit)};
}

Window window(const Tensor& t, std::int64_t begin, std::int64_t count, const Device& device) {
  const auto es = static_cast<std::uint32_t>(element_bytes(t.dtype()));
  return byte_window(t, static_cast<std::uint64_t>(t.offset() + begin) * es, static_cast<std::uint64_t>(count) * es,
                     es, device);
}

Window whole(const Tensor& t, const Device& device) { return window(t, 0, t.numel(), device); }

std::int64_t window_bytes(const Device& device) {
  return static_cast<std::int64_t>(device.limits().max_storage_range - device.limits().storage_alignment);
}

std::int64_t rows_per_binding(std::int64_t row_bytes, const Device& device, std::string_view op) {
  // A window may start up to one alignment before its first row and end up to a word after.
  const std::int64_t usable = window_bytes(device) - 4;
  MF_CHECK(row_bytes <= usable, Unsupported, "[", op, "] a row of ", row_bytes, " bytes is longer than the ",
           device.limits().max_storage_range, " bytes one storage binding may cover on '", device.info().name, "'");
  return std::max<std::int64_t>(1, usable / std::max<std::int64_t>(row_bytes, 1));
}

std::uint32_t groups_for(std::int64_t items, std::int64_t per_group, const Device& device, int axis) {
  const std::int64_t groups = (items + per_group - 1) / per_group;
  const auto cap = static_cast<std::int64_t>(device.limits().max_groups[static_cast<std::size_t>(axis)]);
  return static_cast<std::uint32_t>(std::clamp<std::int64_t>(groups, 1, cap));
}

// Names are built for every dispatch: appends to one string, not a stream.
std::string variant(std::string_view shader, Dtype weights, bool subgroup) {
  std::string name;
  name.reserve(64);
  name.append(shader).append("_").append(format::dtype_name(weights)).append("_f32");
  if (subgroup) name.append("_sg");
  return name;
}

std::string norm_variant(std::string_view shader, Dtype weights, Dtype norm_weight) {
  std::string name = variant(shader, weights, false);
  name.append("_").append(format::dtype_name(norm_weight)).append("_sg");
  return name;
}

}  // namespace moeflux::backend::vk
