// Devices and the runtime: listing, selection by index and name with clear errors, features,
// create_backend("vulkan"), and that a validation error is caught and raised at the next sync.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "moeflux/backend/devices.h"
#include "moeflux/backend/vulkan/structs.h"
#include "moeflux/util/error.h"
#include "vulkan_harness.h"

namespace moeflux::test {
namespace {

using backend::vk::VulkanBackend;

TEST(VulkanDevices, ListsAUsableDevice) {
  const auto devices = backend::list_devices();
  ASSERT_FALSE(devices.empty()) << "no Vulkan device; install mesa-vulkan-drivers for lavapipe";
  bool usable = false;
  for (const auto& d : devices) {
    EXPECT_FALSE(d.name.empty());
    EXPECT_FALSE(d.heaps.empty()) << d.name;
    EXPECT_GT(d.max_storage_buffer_range, 0u) << d.name;
    usable = usable || d.missing.empty();
  }
  EXPECT_TRUE(usable);
}

TEST(VulkanDevices, SelectsByIndexAndByName) {
  const auto devices = backend::list_devices();
  ASSERT_FALSE(devices.empty());
  const std::string name = devices[0].name;
  VulkanBackend by_index(backend::vk::options_from_environment("0"));
  EXPECT_EQ(by_index.device().info().name, name);
  // Any case, any part of the name.
  std::string part = name.substr(0, std::min<std::size_t>(name.size(), 5));
  for (char& c : part) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  VulkanBackend by_name(backend::vk::options_from_environment(part));
  EXPECT_EQ(by_name.device().info().name, name);
}

TEST(VulkanDevices, UnknownDevicesAreConfigErrorsListingTheDevices) {
  const auto devices = backend::list_devices();
  ASSERT_FALSE(devices.empty());
  for (const std::string selector : {"99", "no-such-gpu"}) {
    try {
      VulkanBackend gpu(backend::vk::options_from_environment(selector));
      ADD_FAILURE() << "expected ConfigError for device " << selector;
    } catch (const ConfigError& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(selector), std::string::npos) << message;
      EXPECT_NE(message.find(devices[0].name), std::string::npos) << message;
    }
  }
}

TEST(VulkanDevices, CreateBackendByName) {
  auto gpu = backend::create_backend({.name = "vulkan", .threads = 0, .device = "0"});
  EXPECT_EQ(gpu->name(), "vulkan");
}

TEST(VulkanDevices, FeaturesFollowTheOptions) {
  auto gpu = make_vulkan({.name = "fallbacks", .storage16 = false, .subgroups = false, .max_storage_range = 1 << 20});
  const auto& f = gpu->device().features();
  EXPECT_FALSE(f.storage16);
  EXPECT_FALSE(f.subgroup_arithmetic);
  EXPECT_TRUE(f.timeline_semaphore);
  EXPECT_EQ(gpu->device().limits().max_storage_range, 1u << 20);
  expect_no_validation_messages(*gpu);
}

TEST(VulkanDevices, AValidationErrorIsRaisedAtTheNextSync) {
  auto gpu = make_vulkan();
  if (!gpu->device().validation_enabled()) GTEST_SKIP() << "run with MOEFLUX_VULKAN_VALIDATION=1";
  // A buffer of size 0 is invalid usage; the layer reports it and the driver is never asked to use it.
  auto info = backend::vk::vk_struct<VkBufferCreateInfo>(VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO);
  info.size = 0;
  info.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT;
  VkBuffer buffer = VK_NULL_HANDLE;
  const VkDevice device = gpu->device().handle();
  if (vkCreateBuffer(device, &info, nullptr, &buffer) == VK_SUCCESS) vkDestroyBuffer(device, buffer, nullptr);
  EXPECT_GT(gpu->context().device.validation_log().count(), 0u);
  EXPECT_THROW(gpu->finish(), DeviceError);
  EXPECT_NO_THROW(gpu->finish());  // each message is raised once
}

// A backend with the profiler on and two small tensors for its dispatches.
class VulkanProfiler : public ::testing::Test {
 protected:
  static backend::vk::VulkanOptions profiled() {
    backend::vk::VulkanOptions options = backend::vk::options_from_environment("");
    options.profile = true;
    return options;
  }
  VulkanProfiler() : gpu(profiled()), a(gpu.empty({64})), b(gpu.empty({64})) { gpu.upload(random_values(64, 90), a); }
  VulkanBackend gpu;
  Tensor a, b;
};

// Every dispatch is measured under its shader's label, and a reset starts the counts again.
TEST_F(VulkanProfiler, CountsAndTimesCommandsPerShader) {
  auto count_adds = [&](int n) {
    gpu.finish();
    gpu.reset_stats();
    for (int i = 0; i < n; ++i) gpu.add(a, a, b);
    gpu.finish();
    const auto s = gpu.stats();
    if (s.find("gpu_commands.add") == s.end()) return -1.0;  // the device has no timestamps
    EXPECT_GE(s.at("gpu_seconds.add"), 0.0);
    return s.at("gpu_commands.add");
  };
  const double three = count_adds(3);
  if (three < 0) GTEST_SKIP() << "the device's compute queue has no timestamps";
  EXPECT_EQ(three, 3.0);
  EXPECT_EQ(count_adds(5), 5.0);
}

// The GPU's time between a batch that ended and the next one, which the host submitted later, is
// counted as idle: here at least the host's pause between them, each after a host wait.
TEST_F(VulkanProfiler, CountsTheGpuIdleBetweenBatches) {
  gpu.add(a, a, b);
  gpu.finish();
  gpu.reset_stats();
  if (gpu.stats().count("gpu_idle_seconds") == 0) GTEST_SKIP() << "the device's compute queue has no timestamps";
  constexpr double kPause = 0.05;
  for (int i = 0; i < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::duration<double>(kPause));
    gpu.add(a, a, b);
    gpu.finish();
  }
  EXPECT_GE(gpu.stats().at("gpu_idle_seconds"), 2 * kPause * 0.9);
  EXPECT_GE(gpu.stats().at("gpu_idle_after_wait_seconds"), 2 * kPause * 0.9);  // each batch came after a wait
  gpu.reset_stats();
  EXPECT_EQ(gpu.stats().at("gpu_idle_seconds"), 0.0);
}

}  // namespace
}  // namespace moeflux::test
