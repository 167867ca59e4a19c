// Device selection (by index or name), queue families, the logical device with the features the
// backend uses, and the limits dispatches are checked against.
#include "moeflux/backend/vulkan/device.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "moeflux/backend/vulkan/check.h"
#include "moeflux/backend/vulkan/structs.h"
#include "moeflux/util/error.h"

namespace moeflux::backend::vk {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string listing(const std::vector<DeviceInfo>& infos) {
  std::string out;
  for (const DeviceInfo& d : infos) {
    out += util::concat(out.empty() ? "" : ", ", d.index, ": '", d.name, "' (", d.type, ")");
  }
  return out;
}

std::string missing_list(const DeviceInfo& d) {
  std::string out;
  for (const std::string& m : d.missing) out += (out.empty() ? "" : ", ") + m;
  return out;
}

int type_rank(const std::string& type) {
  const char* order[] = {"discrete", "integrated", "virtual", "cpu"};
  for (int i = 0; i < 4; ++i) {
    if (type == order[i]) return i;
  }
  return 4;
}

// The device `selector` names: "" (best usable type first), an index, or part of a name.
const DeviceInfo& select(const std::vector<DeviceInfo>& infos, const std::string& selector) {
  MF_CHECK(!infos.empty(), DeviceError,
           "[vulkan] no Vulkan device found; install a Vulkan driver (Debian: mesa-vulkan-drivers "
           "gives the lavapipe CPU device) or use backend='cpu'");
  const DeviceInfo* chosen = nullptr;
  if (selector.empty()) {
    for (const DeviceInfo& d : infos) {
      const bool better = chosen == nullptr || (chosen->missing.empty() != d.missing.empty()
                                                    ? d.missing.empty()
                                                    : type_rank(d.type) < type_rank(chosen->type));
      if (better) chosen = &d;
    }
  } else if (std::all_of(selector.begin(), selector.end(), [](unsigned char c) { return std::isdigit(c); })) {
    const long index = std::strtol(selector.c_str(), nullptr, 10);
    MF_CHECK(index >= 0 && index < static_cast<long>(infos.size()), ConfigError, "[vulkan] device ", selector,
             " does not exist; the devices are ", listing(infos));
    chosen = &infos[static_cast<std::size_t>(index)];
  } else {
    for (const DeviceInfo& d : infos) {
      if (chosen == nullptr && lower(d.name).find(lower(selector)) != std::string::npos) chosen = &d;
    }
    MF_CHECK(chosen != nullptr, ConfigError, "[vulkan] no device name contains '", selector,
             "'; the devices are ", listing(infos));
  }
  MF_CHECK(chosen->missing.empty(), Unsupported, "[vulkan] device ", chosen->index, " '", chosen->name,
           "' lacks ", missing_list(*chosen), ", which moeflux needs; the devices are ", listing(infos),
           "; pick another with device=..., or use backend='cpu'");
  return *chosen;
}

}  // namespace

VulkanOptions options_from_environment(const std::string& device) {
  VulkanOptions options;
  options.device = device;
  const char* validation = std::getenv("MOEFLUX_VULKAN_VALIDATION");
  options.validation = validation != nullptr && std::string(validation) == "1";
  const char* profile = std::getenv("MOEFLUX_VULKAN_PROFILE");
  options.profile = profile != nullptr && std::string(profile) == "1";
  return options;
}

Device::Device(const VulkanOptions& options) : instance_(options.validation) {
  std::vector<DeviceInfo> infos;
  const std::vector<VkPhysicalDevice> physical = instance_.physical_devices();
  for (std::size_t i = 0; i < physical.size(); ++i) infos.push_back(describe_device(physical[i], static_cast<int>(i)));
  info_ = select(infos, options.device);
  physical_ = physical[static_cast<std::size_t>(info_.index)];

  features_ = info_.features;
  features_.storage16 = features_.storage16 && options.storage16;
  features_.subgroup_arithmetic = features_.subgroup_arithmetic && options.subgroups;
  features_.cooperative_matrix_nv = false;  // noted in info(), not enabled until a shader uses it

  auto p11 = vk_struct<VkPhysicalDeviceVulkan11Properties>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_PROPERTIES);
  auto props = vk_struct<VkPhysicalDeviceProperties2>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2);
  props.pNext = &p11;
  vkGetPhysicalDeviceProperties2(physical_, &props);
  const VkPhysicalDeviceLimits& l = props.properties.limits;
  limits_.max_storage_range = l.maxStorageBufferRange;
  if (options.max_storage_range > 0) limits_.max_storage_range = std::min<std::uint64_t>(l.maxStorageBufferRange, options.max_storage_range);
  limits_.storage_alignment = l.minStorageBufferOffsetAlignment;
  limits_.max_groups = {l.maxComputeWorkGroupCount[0], l.maxComputeWorkGroupCount[1], l.maxComputeWorkGroupCount[2]};
  if (options.max_groups > 0) {
    for (std::uint32_t& g : limits_.max_groups) g = std::min(g, options.max_groups);
  }
  limits_.max_storage_buffers = l.maxPerStageDescriptorStorageBuffers;
  if (options.max_storage_buffers > 0) limits_.max_storage_buffers = std::min(limits_.max_storage_buffers, options.max_storage_buffers);
  limits_.max_invocations = l.maxComputeWorkGroupInvocations;
  limits_.max_push_constants = l.maxPushConstantsSize;
  limits_.max_allocation = p11.maxMemoryAllocationSize;
  limits_.max_buffer = p11.maxMemoryAllocationSize;
  vkGetPhysicalDeviceMemoryProperties(physical_, &memory_);

  std::uint32_t n = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(physical_, &n, nullptr);
  std::vector<VkQueueFamilyProperties> families(n);
  vkGetPhysicalDeviceQueueFamilyProperties(physical_, &n, families.data());
  compute_family_ = n;
  for (std::uint32_t i = 0; i < n; ++i) {
    if (compute_family_ == n && (families[i].queueFlags & VK_QUEUE_COMPUTE_BIT) != 0) compute_family_ = i;
  }
  MF_ASSERT(compute_family_ < n, "describe_device found a compute queue that is gone");
  transfer_family_ = compute_family_;
  for (std::uint32_t i = 0; i < n; ++i) {
    const VkQueueFlags f = families[i].queueFlags;
    const bool dedicated = (f & VK_QUEUE_TRANSFER_BIT) != 0 && (f & (VK_QUEUE_COMPUTE_BIT | VK_QUEUE_GRAPHICS_BIT)) == 0;
    if (dedicated && transfer_family_ == compute_family_) transfer_family_ = i;
  }

  const float priority = 1.0f;
  VkDeviceQueueCreateInfo queues[2];
  for (std::uint32_t i = 0; i < 2; ++i) {
    queues[i] = vk_struct<VkDeviceQueueCreateInfo>(VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO);
    queues[i].queueFamilyIndex = i == 0 ? compute_family_ : transfer_family_;
    queues[i].queueCount = 1;
    queues[i].pQueuePriorities = &priority;
  }
  auto f11 = vk_struct<VkPhysicalDeviceVulkan11Features>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES);
  auto f12 = vk_struct<VkPhysicalDeviceVulkan12Features>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES);
  f11.pNext = &f12;
  f11.storageBuffer16BitAccess = features_.storage16 ? VK_TRUE : VK_FALSE;
  f12.storageBuffer8BitAccess = features_.storage8 ? VK_TRUE : VK_FALSE;
  f12.shaderFloat16 = features_.float16 ? VK_TRUE : VK_FALSE;
  f12.timelineSemaphore = VK_TRUE;
  f12.bufferDeviceAddress = VK_TRUE;
  std::uint32_t n_ext = 0;
  check(vkEnumerateDeviceExtensionProperties(physical_, nullptr, &n_ext, nullptr), "vkEnumerateDeviceExtensionProperties");
  std::vector<VkExtensionProperties> extensions(n_ext);
  check(vkEnumerateDeviceExtensionProperties(physical_, nullptr, &n_ext, extensions.data()),
        "vkEnumerateDeviceExtensionProperties");
  for (const VkExtensionProperties& e : extensions) {
    if (std::string_view(e.extensionName) == VK_EXT_MEMORY_BUDGET_EXTENSION_NAME) memory_budget_ = true;
  }
  const char* enabled[] = {VK_EXT_MEMORY_BUDGET_EXTENSION_NAME};
  auto create = vk_struct<VkDeviceCreateInfo>(VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO);
  create.pNext = &f11;
  create.enabledExtensionCount = memory_budget_ ? 1 : 0;
  create.ppEnabledExtensionNames = enabled;
  create.queueCreateInfoCount = transfer_family_ == compute_family_ ? 1 : 2;
  create.pQueueCreateInfos = queues;
  check(vkCreateDevice(physical_, &create, nullptr, &device_), "vkCreateDevice");
  vkGetDeviceQueue(device_, compute_family_, 0, &compute_queue_);
  vkGetDeviceQueue(device_, transfer_family_, 0, &transfer_queue_);
}

Device::~Device() { vkDestroyDevice(device_, nullptr); }

}  // namespace moeflux::backend::vk
