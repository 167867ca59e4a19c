// What the driver made of each shader variant: for every variant whose name holds FILTER, a compute
// pipeline is created on its own device with VK_KHR_pipeline_executable_properties, and the driver's
// statistics (registers, shared and local memory, instruction counts: whatever it reports) are
// printed, one JSON line per variant; with IR=1 its internal representations follow as text.
//   vulkan_pipeline_stats [FILTER=""] [IR=0]
#include <vulkan/vulkan.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "moeflux/backend/vulkan/pipelines.h"
#include "moeflux/backend/vulkan/spirv.h"
#include "moeflux/backend/vulkan/structs.h"

namespace {

using namespace moeflux::backend::vk;

void ok(VkResult r, const char* what) {
  if (r != VK_SUCCESS) throw std::runtime_error(std::string(what) + " failed: " + std::to_string(r));
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string stat_value(const VkPipelineExecutableStatisticKHR& s) {
  switch (s.format) {
    case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_BOOL32_KHR: return s.value.b32 ? "true" : "false";
    case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_INT64_KHR: return std::to_string(s.value.i64);
    case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_UINT64_KHR: return std::to_string(s.value.u64);
    case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_FLOAT64_KHR: return std::to_string(s.value.f64);
    default: return "null";
  }
}

// Vulkan's two-call enumeration: `query(&count, nullptr)`, then `query(&count, items)`.
template <typename T, typename Query>
std::vector<T> enumerate(VkStructureType type, Query query) {
  std::uint32_t n = 0;
  query(&n, nullptr);
  std::vector<T> items(n, vk_struct<T>(type));
  query(&n, items.data());
  return items;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string filter = argc > 1 ? argv[1] : "";
  const bool ir = argc > 2 && std::atoi(argv[2]) != 0;
  try {
    auto app = vk_struct<VkApplicationInfo>(VK_STRUCTURE_TYPE_APPLICATION_INFO);
    app.apiVersion = VK_API_VERSION_1_2;
    auto ici = vk_struct<VkInstanceCreateInfo>(VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO);
    ici.pApplicationInfo = &app;
    VkInstance instance = VK_NULL_HANDLE;
    ok(vkCreateInstance(&ici, nullptr, &instance), "vkCreateInstance");
    std::uint32_t count = 0;
    vkEnumeratePhysicalDevices(instance, &count, nullptr);
    if (count == 0) throw std::runtime_error("no Vulkan device");
    std::vector<VkPhysicalDevice> physical(count);
    vkEnumeratePhysicalDevices(instance, &count, physical.data());
    const VkPhysicalDevice gpu = physical[0];
    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties(gpu, &props);

    // Every feature the device has, the executable properties included.
    auto exec = vk_struct<VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR>(
        VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR);
    auto f12 = vk_struct<VkPhysicalDeviceVulkan12Features>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES);
    f12.pNext = &exec;
    auto f11 = vk_struct<VkPhysicalDeviceVulkan11Features>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES);
    f11.pNext = &f12;
    auto features = vk_struct<VkPhysicalDeviceFeatures2>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2);
    features.pNext = &f11;
    vkGetPhysicalDeviceFeatures2(gpu, &features);
    if (!exec.pipelineExecutableInfo) throw std::runtime_error("no VK_KHR_pipeline_executable_properties");

    const float priority = 1.0f;
    auto queue = vk_struct<VkDeviceQueueCreateInfo>(VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO);
    queue.queueCount = 1;
    queue.pQueuePriorities = &priority;
    const char* extensions[] = {VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME};
    auto dci = vk_struct<VkDeviceCreateInfo>(VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO);
    dci.pNext = &features;
    dci.queueCreateInfoCount = 1;
    dci.pQueueCreateInfos = &queue;
    dci.enabledExtensionCount = 1;
    dci.ppEnabledExtensionNames = extensions;
    VkDevice device = VK_NULL_HANDLE;
    ok(vkCreateDevice(gpu, &dci, nullptr, &device), "vkCreateDevice");
    auto executables = reinterpret_cast<PFN_vkGetPipelineExecutablePropertiesKHR>(
        vkGetDeviceProcAddr(device, "vkGetPipelineExecutablePropertiesKHR"));
    auto statistics = reinterpret_cast<PFN_vkGetPipelineExecutableStatisticsKHR>(
        vkGetDeviceProcAddr(device, "vkGetPipelineExecutableStatisticsKHR"));
    auto representations = reinterpret_cast<PFN_vkGetPipelineExecutableInternalRepresentationsKHR>(
        vkGetDeviceProcAddr(device, "vkGetPipelineExecutableInternalRepresentationsKHR"));

    // One layout wide enough for any shader: 16 storage buffers and 128 bytes of push constants.
    VkDescriptorSetLayoutBinding bindings[16];
    for (std::uint32_t i = 0; i < 16; ++i) {
      bindings[i] = {i, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, nullptr};
    }
    auto sci = vk_struct<VkDescriptorSetLayoutCreateInfo>(VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO);
    sci.bindingCount = 16;
    sci.pBindings = bindings;
    VkDescriptorSetLayout set_layout = VK_NULL_HANDLE;
    ok(vkCreateDescriptorSetLayout(device, &sci, nullptr, &set_layout), "vkCreateDescriptorSetLayout");
    const VkPushConstantRange push{VK_SHADER_STAGE_COMPUTE_BIT, 0, 128};
    auto lci = vk_struct<VkPipelineLayoutCreateInfo>(VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO);
    lci.setLayoutCount = 1;
    lci.pSetLayouts = &set_layout;
    lci.pushConstantRangeCount = 1;
    lci.pPushConstantRanges = &push;
    VkPipelineLayout layout = VK_NULL_HANDLE;
    ok(vkCreatePipelineLayout(device, &lci, nullptr, &layout), "vkCreatePipelineLayout");

    std::printf("{\"device\": \"%s\"}\n", json_escape(props.deviceName).c_str());
    for (const SpirvVariant& v : spirv_variants()) {
      if (std::string(v.name).find(filter) == std::string::npos) continue;
      auto mci = vk_struct<VkShaderModuleCreateInfo>(VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO);
      mci.codeSize = v.code.size_bytes();
      mci.pCode = v.code.data();
      VkShaderModule module = VK_NULL_HANDLE;
      ok(vkCreateShaderModule(device, &mci, nullptr, &module), "vkCreateShaderModule");
      const std::uint32_t local_size = shader_spec(v.shader).local_size;
      const VkSpecializationMapEntry entry{0, 0, sizeof(std::uint32_t)};
      const VkSpecializationInfo spec{1, &entry, sizeof(local_size), &local_size};
      auto cci = vk_struct<VkComputePipelineCreateInfo>(VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO);
      cci.flags = VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR |
                  (ir ? VK_PIPELINE_CREATE_CAPTURE_INTERNAL_REPRESENTATIONS_BIT_KHR : 0);
      cci.stage = vk_struct<VkPipelineShaderStageCreateInfo>(VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO);
      cci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
      cci.stage.module = module;
      cci.stage.pName = "main";
      cci.stage.pSpecializationInfo = &spec;
      cci.layout = layout;
      VkPipeline pipeline = VK_NULL_HANDLE;
      const VkResult created = vkCreateComputePipelines(device, VK_NULL_HANDLE, 1, &cci, nullptr, &pipeline);
      vkDestroyShaderModule(device, module, nullptr);
      if (created != VK_SUCCESS) {
        std::printf("{\"variant\": \"%s\", \"error\": %d}\n", std::string(v.name).c_str(), created);
        continue;
      }
      auto info = vk_struct<VkPipelineInfoKHR>(VK_STRUCTURE_TYPE_PIPELINE_INFO_KHR);
      info.pipeline = pipeline;
      const auto execs = enumerate<VkPipelineExecutablePropertiesKHR>(
          VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_PROPERTIES_KHR,
          [&](std::uint32_t* n, VkPipelineExecutablePropertiesKHR* out) { executables(device, &info, n, out); });
      for (std::uint32_t e = 0; e < execs.size(); ++e) {
        auto which = vk_struct<VkPipelineExecutableInfoKHR>(VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INFO_KHR);
        which.pipeline = pipeline;
        which.executableIndex = e;
        const auto stats = enumerate<VkPipelineExecutableStatisticKHR>(
            VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_STATISTIC_KHR,
            [&](std::uint32_t* n, VkPipelineExecutableStatisticKHR* out) { statistics(device, &which, n, out); });
        std::string line = "{\"variant\": \"" + std::string(v.name) + "\", \"subgroup\": " +
                           std::to_string(execs[e].subgroupSize);
        for (const auto& s : stats) line += ", \"" + json_escape(s.name) + "\": " + stat_value(s);
        std::printf("%s}\n", line.c_str());
        if (!ir) continue;
        // Sizes first, then the text into buffers of those sizes.
        auto reps = enumerate<VkPipelineExecutableInternalRepresentationKHR>(
            VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INTERNAL_REPRESENTATION_KHR,
            [&](std::uint32_t* n, VkPipelineExecutableInternalRepresentationKHR* out) {
              representations(device, &which, n, out);
            });
        auto rn = static_cast<std::uint32_t>(reps.size());
        std::vector<std::vector<char>> text(rn);
        for (std::uint32_t i = 0; i < rn; ++i) {
          text[i].resize(reps[i].dataSize + 1, '\0');
          reps[i].pData = text[i].data();
        }
        representations(device, &which, &rn, reps.data());
        for (std::uint32_t i = 0; i < rn; ++i) {
          std::printf("==== %s: %s (%s)\n%s\n", std::string(v.name).c_str(), reps[i].name, reps[i].description,
                      reps[i].isText ? text[i].data() : "(binary)");
        }
      }
      vkDestroyPipeline(device, pipeline, nullptr);
    }
    vkDestroyPipelineLayout(device, layout, nullptr);
    vkDestroyDescriptorSetLayout(device, set_layout, nullptr);
    vkDestroyDevice(device, nullptr);
    vkDestroyInstance(instance, nullptr);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vulkan_pipeline_stats: %s\n", e.what());
    return 1;
  }
  return 0;
}
