// Pipelines: one table of every shader (bindings, parameter block size, workgroup size; in
// pipelines.cpp), and the compute pipelines of its variants (spirv.h), compiled on first use and
// cached by variant name. The workgroup size reaches the shader as specialisation constant 0.
#pragma once

#include <vulkan/vulkan.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "moeflux/backend/vulkan/device.h"

namespace moeflux::backend::vk {

// The most storage buffers a shader binds (attention_decode_step's 12), and the most that the
// shaders every path needs bind: devices offering fewer per shader stage than that are refused at
// selection; an op whose fused shader binds more than the device offers takes its plain ops.
constexpr std::uint32_t kMaxShaderBindings = 12;
constexpr std::uint32_t kRequiredShaderBindings = 8;

// A row of the table: what the host must know about a shader template.
struct ShaderSpec {
  std::string_view shader;     // shaders/<shader>.comp
  std::uint32_t bindings;      // storage buffers 0 .. bindings-1: reads first, then writes
  std::uint32_t params_size;   // bytes of its parameter block (shaders/params/<op>.h)
  std::uint32_t local_size;    // invocations per workgroup (a power of two)
};

// The table's row of a shader template. InternalError for a shader with no row.
const ShaderSpec& shader_spec(std::string_view shader);

struct Pipeline {
  std::string name;            // the variant
  ShaderSpec spec;
  VkDescriptorSetLayout set_layout = VK_NULL_HANDLE;  // shared by pipelines with as many bindings
  VkPipelineLayout layout = VK_NULL_HANDLE;
  VkPipeline pipeline = VK_NULL_HANDLE;
};

class Pipelines {
 public:
  explicit Pipelines(const Device& device);
  ~Pipelines();
  Pipelines(const Pipelines&) = delete;
  Pipelines& operator=(const Pipelines&) = delete;

  // The pipeline of a variant ("rms_norm_bf16_f32_sg"). InternalError for an unknown name or a
  // variant needing a feature the device does not have enabled (the caller picks variants).
  const Pipeline& get(std::string_view variant);
  // True when the device has every feature the variant needs.
  bool available(std::string_view variant) const;

 private:
  VkDescriptorSetLayout set_layout(std::uint32_t bindings);

  const Device& device_;
  std::map<std::string, std::unique_ptr<Pipeline>, std::less<>> pipelines_;
  std::map<std::uint32_t, VkDescriptorSetLayout> set_layouts_;
};

}  // namespace moeflux::backend::vk
