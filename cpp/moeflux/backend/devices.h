// The Vulkan devices as moeflux sees them, and the way in to the Vulkan backend. No Vulkan types
// here: create_backend and the bindings use this header whether or not moeflux was built with
// Vulkan (without it, vulkan_stub/ implements both and says what was missing).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "moeflux/backend/backend.h"

namespace moeflux::backend {

// What a device offers (or, for an opened device, what the backend uses).
struct DeviceFeatures {
  bool storage16 = false;            // 16-bit storage buffers: f16/bf16 weights stay 16-bit
  bool storage8 = false;             // 8-bit storage buffers
  bool float16 = false;              // float16 arithmetic in shaders
  bool subgroup_arithmetic = false;  // subgroup reductions in compute shaders
  std::uint32_t subgroup_size = 0;
  bool timeline_semaphore = false;   // required (Vulkan 1.2)
  bool buffer_device_address = false;  // required: MoE kernels reach expert slots by address
  bool cooperative_matrix_nv = false;  // VK_NV_cooperative_matrix (tensor cores), not used yet
};

struct MemoryHeap {
  std::uint64_t size = 0;
  bool device_local = false;
};

struct DeviceInfo {
  int index = 0;             // the position in the Vulkan device list; Model(..., device=index)
  std::string name;
  std::string type;          // "discrete", "integrated", "virtual", "cpu" or "other"
  std::string api_version;   // "1.3.230"
  std::string driver;        // driver name and version string, where the driver reports them
  std::vector<MemoryHeap> heaps;
  std::uint64_t max_storage_buffer_range = 0;
  DeviceFeatures features;
  std::vector<std::string> missing;  // what moeflux needs and the device lacks; empty: usable
};

// The Vulkan devices present; empty when there is no Vulkan driver. Throws Unsupported when
// moeflux was built without Vulkan.
std::vector<DeviceInfo> list_devices();

// The Vulkan backend on options.device ("": the first discrete GPU, else the first usable device;
// an index such as "1"; or part of a device name). Throws Unsupported when moeflux was built
// without Vulkan or the device lacks a required feature, DeviceError when Vulkan fails.
std::unique_ptr<Backend> create_vulkan_backend(const BackendOptions& options);

}  // namespace moeflux::backend
