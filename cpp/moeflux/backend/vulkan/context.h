// Context: everything one Vulkan backend owns, built in this order and destroyed in reverse.
// Tensors hold it through their storage, so memory outlives the backend object if they do.
#pragma once

#include <memory>

#include "moeflux/backend/tensor.h"
#include "moeflux/backend/vulkan/device.h"
#include "moeflux/backend/vulkan/memory.h"
#include "moeflux/backend/vulkan/pipelines.h"
#include "moeflux/backend/vulkan/recorder.h"

namespace moeflux::backend::vk {

struct Context {
  explicit Context(const VulkanOptions& options);

  Device device;
  Memory memory;
  Pipelines pipelines;
  Recorder recorder;
};

// The device memory behind a Vulkan tensor. Dropping the last tensor of it returns the memory once
// the GPU has finished every command recorded so far.
class VulkanStorage final : public Storage {
 public:
  VulkanStorage(std::shared_ptr<Context> context, Allocation allocation, VkDeviceSize bytes);
  ~VulkanStorage() override;
  VulkanStorage(const VulkanStorage&) = delete;
  VulkanStorage& operator=(const VulkanStorage&) = delete;

  const Context& context() const { return *context_; }
  const Allocation& allocation() const { return allocation_; }
  VkDeviceSize bytes() const { return bytes_; }  // as requested; the allocation may be larger

 private:
  std::shared_ptr<Context> context_;
  Allocation allocation_;
  VkDeviceSize bytes_;
};

}  // namespace moeflux::backend::vk
