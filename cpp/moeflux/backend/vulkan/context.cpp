// Context construction and VulkanStorage's deferred free.
#include "moeflux/backend/vulkan/context.h"

namespace moeflux::backend::vk {
Context::Context(const VulkanOptions& options)
    : device(options), memory(device), pipelines(device), recorder(device, memory, options.profile) {}

VulkanStorage::VulkanStorage(std::shared_ptr<Context> context, Allocation allocation, VkDeviceSize bytes)
    : context_(std::move(context)), allocation_(allocation), bytes_(bytes) {}

VulkanStorage::~VulkanStorage() { context_->memory.free_after(allocation_, context_->recorder.pending_value()); }

}  // namespace moeflux::backend::vk
