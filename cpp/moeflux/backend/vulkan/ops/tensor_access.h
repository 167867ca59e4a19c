// What every Vulkan op does before recording: find a tensor's device memory (checking it belongs
// to this backend), cut it into bindings no larger than the device allows, and size the grid.
// Ops bind windows, never raw offsets: a window's `first` goes into the shader's parameters.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "moeflux/backend/tensor.h"
#include "moeflux/backend/vulkan/context.h"

namespace moeflux::backend::vk {

// The storage of t; throws when t is undefined or belongs to another backend.
const VulkanStorage& storage_of(const Tensor& t, const Context& context, std::string_view op, std::string_view what);
// As storage_of, and t must be float32 (an activation, or a weight kept as f32).
const VulkanStorage& f32_storage_of(const Tensor& t, const Context& context, std::string_view op,
                                    std::string_view what);

// Bytes per element as stored on the device: 4 (f32), 2 (f16, bf16); 1 for quantized bytes.
std::size_t element_bytes(Dtype dtype);

// The exact bytes of elements [begin, begin + count) of t (for copies).
Binding byte_range(const Tensor& t, std::int64_t begin, std::int64_t count);

// A storage binding over elements [begin, begin + count) of t, its offset aligned down for the
// device: the shader finds element `begin` at index `first` of the binding.
struct Window {
  Binding binding;
  std::uint32_t first = 0;
};
Window window(const Tensor& t, std::int64_t begin, std::int64_t count, const Device& device);
// The same over bytes [begin, begin + bytes) of t's storage (a section of a quantized weight),
// `first` counted in units of `unit` bytes (4: words, 2: 16-bit values).
Window byte_window(const Tensor& t, std::uint64_t begin, std::uint64_t bytes, std::uint32_t unit, const Device& device);
Window whole(const Tensor& t, const Device& device);

// Bytes a window of one binding may hold wherever it starts (its offset is aligned down).
std::int64_t window_bytes(const Device& device);
// Rows of row_bytes one binding may cover (at least 1; Unsupported when a single row is too long).
std::int64_t rows_per_binding(std::int64_t row_bytes, const Device& device, std::string_view op);

// Workgroups for `items` at `per_group` each, capped at the device's limit for `axis`; shaders
// loop over what the cap leaves.
std::uint32_t groups_for(std::int64_t items, std::int64_t per_group, const Device& device, int axis = 0);

// "<shader>_<weights>_f32[_sg]": the variant of a shader for a weight dtype.
std::string variant(std::string_view shader, Dtype weights, bool subgroup = false);
// "<shader>_<weights>_f32_<norm weight>_sg": a variant that also reads a norm weight (subgroups only).
std::string norm_variant(std::string_view shader, Dtype weights, Dtype norm_weight);

}  // namespace moeflux::backend::vk
