// Instance creation, the validation messenger and describe_device().
#include "moeflux/backend/vulkan/instance.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "moeflux/backend/vulkan/check.h"
#include "moeflux/backend/vulkan/pipelines.h"
#include "moeflux/backend/vulkan/structs.h"
#include "moeflux/util/error.h"

namespace moeflux::backend::vk {
namespace {

constexpr const char* kValidationLayer = "VK_LAYER_KHRONOS_validation";
constexpr std::size_t kKeptMessages = 8;

VKAPI_ATTR VkBool32 VKAPI_CALL on_message(VkDebugUtilsMessageSeverityFlagBitsEXT,
                                          VkDebugUtilsMessageTypeFlagsEXT,
                                          const VkDebugUtilsMessengerCallbackDataEXT* data, void* user) {
  const char* text = data != nullptr && data->pMessage != nullptr ? data->pMessage : "(no message)";
  std::fprintf(stderr, "moeflux: Vulkan validation: %s\n", text);
  static_cast<ValidationLog*>(user)->record(text);
  return VK_FALSE;  // never abort the call: the next sync raises the error instead
}

// NVIDIA's driver fails vkCreateInstance with VK_ERROR_INCOMPATIBLE_DRIVER after a few dozen loads
// and unloads in one process (seen with driver 580 on the H200). A bare instance that lives until
// exit, deliberately never destroyed, keeps every driver loaded between backends.
void keep_drivers_loaded() {
  static const bool loaded = [] {
    auto app = vk_struct<VkApplicationInfo>(VK_STRUCTURE_TYPE_APPLICATION_INFO);
    app.apiVersion = VK_API_VERSION_1_2;
    auto info = vk_struct<VkInstanceCreateInfo>(VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO);
    info.pApplicationInfo = &app;
    VkInstance anchor = VK_NULL_HANDLE;
    return vkCreateInstance(&info, nullptr, &anchor) == VK_SUCCESS;  // a failure shows in the real one
  }();
  (void)loaded;
}

bool has_layer(const char* name) {
  std::uint32_t n = 0;
  check(vkEnumerateInstanceLayerProperties(&n, nullptr), "vkEnumerateInstanceLayerProperties");
  std::vector<VkLayerProperties> layers(n);
  check(vkEnumerateInstanceLayerProperties(&n, layers.data()), "vkEnumerateInstanceLayerProperties");
  return std::any_of(layers.begin(), layers.end(),
                     [&](const VkLayerProperties& l) { return std::strcmp(l.layerName, name) == 0; });
}

std::string version_string(std::uint32_t v) {
  return util::concat(VK_API_VERSION_MAJOR(v), ".", VK_API_VERSION_MINOR(v), ".", VK_API_VERSION_PATCH(v));
}

const char* type_name(VkPhysicalDeviceType type) {
  switch (type) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "cpu";
    default: return "other";
  }
}

bool has_device_extension(VkPhysicalDevice device, const char* name) {
  std::uint32_t n = 0;
  check(vkEnumerateDeviceExtensionProperties(device, nullptr, &n, nullptr), "vkEnumerateDeviceExtensionProperties");
  std::vector<VkExtensionProperties> exts(n);
  check(vkEnumerateDeviceExtensionProperties(device, nullptr, &n, exts.data()), "vkEnumerateDeviceExtensionProperties");
  return std::any_of(exts.begin(), exts.end(),
                     [&](const VkExtensionProperties& e) { return std::strcmp(e.extensionName, name) == 0; });
}

bool has_compute_queue(VkPhysicalDevice device) {
  std::uint32_t n = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(device, &n, nullptr);
  std::vector<VkQueueFamilyProperties> families(n);
  vkGetPhysicalDeviceQueueFamilyProperties(device, &n, families.data());
  return std::any_of(families.begin(), families.end(),
                     [](const VkQueueFamilyProperties& f) { return (f.queueFlags & VK_QUEUE_COMPUTE_BIT) != 0; });
}

}  // namespace

void ValidationLog::record(std::string message) {
  std::lock_guard lock(mutex_);
  if (messages_.size() < kKeptMessages) messages_.push_back(std::move(message));
  ++count_;
}

std::size_t ValidationLog::count() const {
  std::lock_guard lock(mutex_);
  return count_;
}

std::vector<std::string> ValidationLog::messages() const {
  std::lock_guard lock(mutex_);
  return messages_;
}

void ValidationLog::rethrow_new() {
  std::lock_guard lock(mutex_);
  if (count_ == reported_) return;
  const std::size_t first = std::min(reported_, messages_.size() - 1);
  const std::size_t fresh = count_ - reported_;
  reported_ = count_;
  throw DeviceError(util::concat("[vulkan] the validation layer reported ", fresh,
                                 " message(s); the first: ", messages_[first],
                                 " (this is a bug in moeflux; please report it)"));
}

Instance::Instance(bool validation) {
  keep_drivers_loaded();
  const bool layer = validation && has_layer(kValidationLayer);
  auto app = vk_struct<VkApplicationInfo>(VK_STRUCTURE_TYPE_APPLICATION_INFO);
  app.pApplicationName = "moeflux";
  app.pEngineName = "moeflux";
  app.apiVersion = VK_API_VERSION_1_2;

  auto messenger = vk_struct<VkDebugUtilsMessengerCreateInfoEXT>(VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT);
  messenger.messageSeverity =
      VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
  messenger.messageType =
      VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT;
  messenger.pfnUserCallback = on_message;
  messenger.pUserData = log_.get();
  // Synchronization validation checks the barriers the recorder derives from read/write sets.
  const VkValidationFeatureEnableEXT enables[] = {VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT};
  auto features = vk_struct<VkValidationFeaturesEXT>(VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT);
  features.enabledValidationFeatureCount = 1;
  features.pEnabledValidationFeatures = enables;
  features.pNext = &messenger;

  const char* layers[] = {kValidationLayer};
  const char* extensions[] = {VK_EXT_DEBUG_UTILS_EXTENSION_NAME, VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME};
  auto info = vk_struct<VkInstanceCreateInfo>(VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO);
  info.pApplicationInfo = &app;
  if (layer) {
    info.enabledLayerCount = 1;
    info.ppEnabledLayerNames = layers;
    info.enabledExtensionCount = 2;
    info.ppEnabledExtensionNames = extensions;
    info.pNext = &features;
  }
  check(vkCreateInstance(&info, nullptr, &instance_), "vkCreateInstance");
  if (!layer) return;
  auto create = reinterpret_cast<PFN_vkCreateDebugUtilsMessengerEXT>(
      vkGetInstanceProcAddr(instance_, "vkCreateDebugUtilsMessengerEXT"));
  MF_ASSERT(create != nullptr, "the validation layer offers no vkCreateDebugUtilsMessengerEXT");
  messenger.pNext = nullptr;
  const VkResult result = create(instance_, &messenger, nullptr, &messenger_);
  if (result != VK_SUCCESS) vkDestroyInstance(instance_, nullptr);
  check(result, "vkCreateDebugUtilsMessengerEXT");
}

Instance::~Instance() {
  if (messenger_ != VK_NULL_HANDLE) {
    auto destroy = reinterpret_cast<PFN_vkDestroyDebugUtilsMessengerEXT>(
        vkGetInstanceProcAddr(instance_, "vkDestroyDebugUtilsMessengerEXT"));
    if (destroy != nullptr) destroy(instance_, messenger_, nullptr);
  }
  vkDestroyInstance(instance_, nullptr);
}

std::vector<VkPhysicalDevice> Instance::physical_devices() const {
  std::uint32_t n = 0;
  check(vkEnumeratePhysicalDevices(instance_, &n, nullptr), "vkEnumeratePhysicalDevices");
  std::vector<VkPhysicalDevice> devices(n);
  check(vkEnumeratePhysicalDevices(instance_, &n, devices.data()), "vkEnumeratePhysicalDevices");
  devices.resize(n);
  return devices;
}

DeviceInfo describe_device(VkPhysicalDevice device, int index) {
  VkPhysicalDeviceProperties base;
  vkGetPhysicalDeviceProperties(device, &base);
  DeviceInfo info;
  info.index = index;
  info.name = base.deviceName;
  info.type = type_name(base.deviceType);
  info.api_version = version_string(base.apiVersion);
  info.max_storage_buffer_range = base.limits.maxStorageBufferRange;

  VkPhysicalDeviceMemoryProperties memory;
  vkGetPhysicalDeviceMemoryProperties(device, &memory);
  for (std::uint32_t i = 0; i < memory.memoryHeapCount; ++i) {
    info.heaps.push_back({memory.memoryHeaps[i].size,
                          (memory.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) != 0});
  }
  if (!has_compute_queue(device)) info.missing.emplace_back("a compute queue");
  if (base.limits.maxPerStageDescriptorStorageBuffers < kRequiredShaderBindings) {
    info.missing.emplace_back(std::to_string(kRequiredShaderBindings) + " storage buffers per shader stage (the device offers " +
                              std::to_string(base.limits.maxPerStageDescriptorStorageBuffers) + ")");
  }
  if (base.apiVersion < VK_API_VERSION_1_2) {
    info.missing.emplace_back("Vulkan 1.2 (the device offers " + info.api_version + ")");
    return info;  // the 1.1/1.2 feature structures below may not be queried
  }
  auto p11 = vk_struct<VkPhysicalDeviceVulkan11Properties>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_PROPERTIES);
  auto p12 = vk_struct<VkPhysicalDeviceVulkan12Properties>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_PROPERTIES);
  p11.pNext = &p12;
  auto props = vk_struct<VkPhysicalDeviceProperties2>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2);
  props.pNext = &p11;
  vkGetPhysicalDeviceProperties2(device, &props);
  auto f11 = vk_struct<VkPhysicalDeviceVulkan11Features>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES);
  auto f12 = vk_struct<VkPhysicalDeviceVulkan12Features>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES);
  f11.pNext = &f12;
  auto feats = vk_struct<VkPhysicalDeviceFeatures2>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2);
  feats.pNext = &f11;
  vkGetPhysicalDeviceFeatures2(device, &feats);

  info.driver = util::concat(p12.driverName, " ", p12.driverInfo);
  DeviceFeatures& f = info.features;
  f.storage16 = f11.storageBuffer16BitAccess == VK_TRUE;
  f.storage8 = f12.storageBuffer8BitAccess == VK_TRUE;
  f.float16 = f12.shaderFloat16 == VK_TRUE;
  const VkSubgroupFeatureFlags needed = VK_SUBGROUP_FEATURE_BASIC_BIT | VK_SUBGROUP_FEATURE_ARITHMETIC_BIT;
  f.subgroup_arithmetic = (p11.subgroupSupportedStages & VK_SHADER_STAGE_COMPUTE_BIT) != 0 &&
                          (p11.subgroupSupportedOperations & needed) == needed;
  f.subgroup_size = p11.subgroupSize;
  f.timeline_semaphore = f12.timelineSemaphore == VK_TRUE;
  f.buffer_device_address = f12.bufferDeviceAddress == VK_TRUE;
  f.cooperative_matrix_nv = has_device_extension(device, "VK_NV_cooperative_matrix");
  if (!f.timeline_semaphore) info.missing.emplace_back("timeline semaphores");
  if (!f.buffer_device_address) info.missing.emplace_back("buffer device addresses");
  return info;
}

}  // namespace moeflux::backend::vk
