// Device: the selected physical device, its logical device and queues (compute, and a separate
// transfer queue where the device has one), the features the backend uses (what the device
// offers, minus what VulkanOptions switch off) and the limits every dispatch is checked against.
#pragma once

#include <vulkan/vulkan.h>

#include <array>
#include <cstdint>
#include <string>

#include "moeflux/backend/devices.h"
#include "moeflux/backend/vulkan/instance.h"

namespace moeflux::backend::vk {

struct VulkanOptions {
  std::string device;        // "": the first discrete GPU, else the first usable; an index; part of a name
  bool validation = false;   // the Khronos validation layer, where installed
  // Switches for tests: cover the fallbacks on devices that offer more.
  bool storage16 = true;     // false: f16/bf16 weights are widened to f32 on upload
  bool subgroups = true;     // false: shared-memory reductions
  std::uint64_t max_storage_range = 0;  // > 0: pretend maxStorageBufferRange is this small
  std::uint32_t max_groups = 0;         // > 0: pretend maxComputeWorkGroupCount is at most this
  std::uint32_t max_storage_buffers = 0;  // > 0: pretend maxPerStageDescriptorStorageBuffers is this
  bool profile = false;      // GPU timestamps per shader in stats() (MOEFLUX_VULKAN_PROFILE=1)
};

// VulkanOptions for create_backend: the device selector, and validation and profiling from the
// environment (MOEFLUX_VULKAN_VALIDATION=1, MOEFLUX_VULKAN_PROFILE=1).
VulkanOptions options_from_environment(const std::string& device);

struct DeviceLimits {
  std::uint64_t max_storage_range = 0;   // bytes one storage binding may cover (maybe forced lower)
  std::uint64_t storage_alignment = 0;   // minStorageBufferOffsetAlignment
  std::array<std::uint32_t, 3> max_groups{};  // maxComputeWorkGroupCount (maybe forced lower)
  std::uint32_t max_storage_buffers = 0;  // maxPerStageDescriptorStorageBuffers (maybe forced lower)
  std::uint32_t max_invocations = 0;     // maxComputeWorkGroupInvocations
  std::uint32_t max_push_constants = 0;  // bytes
  std::uint64_t max_allocation = 0;      // maxMemoryAllocationSize
  std::uint64_t max_buffer = 0;          // the largest VkBuffer we create
};

class Device {
 public:
  explicit Device(const VulkanOptions& options);
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  VkDevice handle() const { return device_; }
  VkPhysicalDevice physical() const { return physical_; }
  const DeviceInfo& info() const { return info_; }
  const DeviceFeatures& features() const { return features_; }  // what the backend uses
  const DeviceLimits& limits() const { return limits_; }
  const VkPhysicalDeviceMemoryProperties& memory_properties() const { return memory_; }

  VkQueue compute_queue() const { return compute_queue_; }
  std::uint32_t compute_family() const { return compute_family_; }
  // The dedicated transfer queue where there is one (else the compute queue), for the expert
  // store's uploads to overlap compute.
  VkQueue transfer_queue() const { return transfer_queue_; }
  std::uint32_t transfer_family() const { return transfer_family_; }

  // VK_EXT_memory_budget is enabled (the planner reads heap budgets and usage through it).
  bool memory_budget() const { return memory_budget_; }

  bool validation_enabled() const { return instance_.validation_enabled(); }
  ValidationLog& validation_log() { return instance_.log(); }

 private:
  Instance instance_;
  VkPhysicalDevice physical_ = VK_NULL_HANDLE;
  VkDevice device_ = VK_NULL_HANDLE;
  DeviceInfo info_;
  DeviceFeatures features_;
  DeviceLimits limits_;
  VkPhysicalDeviceMemoryProperties memory_{};
  VkQueue compute_queue_ = VK_NULL_HANDLE, transfer_queue_ = VK_NULL_HANDLE;
  std::uint32_t compute_family_ = 0, transfer_family_ = 0;
  bool memory_budget_ = false;
};

}  // namespace moeflux::backend::vk
