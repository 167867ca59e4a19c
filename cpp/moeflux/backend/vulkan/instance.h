// Instance: the VkInstance (Vulkan 1.2), with the Khronos validation layer, synchronization
// validation and a debug messenger when asked for and installed. The messenger records every
// validation warning and error, so tests can assert there were none and syncs can rethrow them.
#pragma once

#include <vulkan/vulkan.h>

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "moeflux/backend/devices.h"

namespace moeflux::backend::vk {

// The validation messages seen so far (thread-safe: the layer may call from any thread).
class ValidationLog {
 public:
  void record(std::string message);
  std::size_t count() const;
  std::vector<std::string> messages() const;  // the first few, verbatim
  // Throws DeviceError when messages arrived since the last call.
  void rethrow_new();

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> messages_;
  std::size_t count_ = 0;
  std::size_t reported_ = 0;
};

class Instance {
 public:
  // validation: enable VK_LAYER_KHRONOS_validation where installed (validation_enabled() says).
  explicit Instance(bool validation);
  ~Instance();
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;

  VkInstance handle() const { return instance_; }
  bool validation_enabled() const { return messenger_ != VK_NULL_HANDLE; }
  ValidationLog& log() { return *log_; }

  std::vector<VkPhysicalDevice> physical_devices() const;

 private:
  VkInstance instance_ = VK_NULL_HANDLE;
  VkDebugUtilsMessengerEXT messenger_ = VK_NULL_HANDLE;
  std::unique_ptr<ValidationLog> log_ = std::make_unique<ValidationLog>();
};

// What moeflux sees in a physical device: features, limits, heaps and what it lacks.
DeviceInfo describe_device(VkPhysicalDevice device, int index);

}  // namespace moeflux::backend::vk
