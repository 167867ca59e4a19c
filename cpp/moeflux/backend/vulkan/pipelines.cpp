// The shader table and pipeline creation. Adding a shader: a row in kShaders (and its variants in
// cmake/shaders.cmake); nothing else here changes.
#include "moeflux/backend/vulkan/pipelines.h"

#include <array>

#include "moeflux/backend/vulkan/check.h"
#include "moeflux/backend/vulkan/spirv.h"
#include "moeflux/backend/vulkan/structs.h"
#include "moeflux/util/error.h"
#include "params/add.h"
#include "params/attention.h"
#include "params/attention_inputs.h"
#include "params/attention_combine.h"
#include "params/attention_step.h"
#include "params/causal_conv1d.h"
#include "params/copy_column_blocks.h"
#include "params/delta_rule_gates.h"
#include "params/dequantize.h"
#include "params/embedding.h"
#include "params/embedding_q.h"
#include "params/fill.h"
#include "params/gated_delta_chunk.h"
#include "params/gated_delta_rule.h"
#include "params/gated_rms_norm.h"
#include "params/matmul.h"
#include "params/matmul_q.h"
#include "params/moe_accumulate.h"
#include "params/moe_combine.h"
#include "params/moe_grouped.h"
#include "params/moe_pairs.h"
#include "params/moe_route.h"
#include "params/rms_norm.h"
#include "params/rms_scale.h"
#include "params/rope.h"
#include "params/sigmoid_mul.h"
#include "params/swiglu.h"
#include "params/write_rows.h"

namespace moeflux::backend::vk {
namespace {

using namespace params;

// 128 where a workgroup reduces many values through shared memory (REDUCE_N * WG floats).
constexpr ShaderSpec kShaders[] = {
    {"embedding", 3, sizeof(EmbeddingParams), 256},
    {"rms_norm", 3, sizeof(RmsNormParams), 256},
    {"rms_scale", 3, sizeof(RmsScaleParams), 256},
    {"matmul_vec", 3, sizeof(MatmulParams), 128},
    {"matmul_vec_norm", 4, sizeof(MatmulParams), 128},
    {"matmul_vec_norm_route", 6, sizeof(MatmulParams), 128},
    {"matmul_tiled", 3, sizeof(MatmulParams), 256},  // its tiles assume 256 invocations
    {"rope", 2, sizeof(RopeParams), 256},
    {"attention_inputs", 8, sizeof(AttentionInputsParams), 64},
    {"write_rows", 2, sizeof(WriteRowsParams), 256},
    {"swiglu", 3, sizeof(SwigluParams), 256},
    {"add", 3, sizeof(AddParams), 256},
    {"sigmoid_mul", 3, sizeof(SigmoidMulParams), 256},
    {"dequantize", 4, sizeof(DequantizeParams), 256},
    {"embedding_q", 5, sizeof(EmbeddingQParams), 64},
    {"matmul_vec_q", 5, sizeof(MatmulQParams), 128},
    {"matmul_vec_q_norm", 6, sizeof(MatmulQParams), 128},
    {"matmul_vec_q_quads", 5, sizeof(MatmulQParams), 128},
    {"matmul_tiled_q", 5, sizeof(MatmulQParams), 256},  // its tiles assume 256 invocations
    {"attention_split", 4, sizeof(AttentionParams), 128},
    {"attention_decode", 4, sizeof(AttentionParams), 256},  // LOADS assumes 256 invocations
    {"attention_decode_step", 12, sizeof(AttentionStepParams), 256},  // as attention_decode
    {"attention_combine", 2, sizeof(AttentionCombineParams), 128},
    {"attention_prefill", 4, sizeof(AttentionParams), 128},
    {"moe_accumulate", 3, sizeof(MoeAccumulateParams), 256},
    {"fill", 1, sizeof(FillParams), 256},
    {"moe_route", 2, sizeof(MoeRouteParams), 256},
    {"moe_gate_up", 4, sizeof(MoePairParams), 256},
    {"moe_down", 6, sizeof(MoePairParams), 128},
    {"moe_grouped", 4, sizeof(MoeGroupedParams), 256},  // its tiles assume 256 invocations
    {"moe_combine", 3, sizeof(MoeCombineParams), 256},
    {"copy_column_blocks", 2, sizeof(CopyColumnBlocksParams), 256},
    {"causal_conv1d", 4, sizeof(CausalConv1dParams), 64},
    {"delta_rule_gates", 6, sizeof(DeltaRuleGatesParams), 256},
    {"gated_delta_rule", 7, sizeof(GatedDeltaRuleParams), 128},
    {"gated_rms_norm", 4, sizeof(GatedRmsNormParams), 128},
    {"gated_delta_chunk_prep", 5, sizeof(GatedDeltaChunkParams), 64},
    {"gated_delta_chunk", 8, sizeof(GatedDeltaChunkParams), 64},
};

std::uint32_t enabled_features(const DeviceFeatures& f) {
  return (f.storage16 ? features::storage16 : 0u) | (f.storage8 ? features::storage8 : 0u) |
         (f.float16 ? features::float16 : 0u) | (f.subgroup_arithmetic ? features::subgroup : 0u) |
         (f.cooperative_matrix_nv ? features::coopmat_nv : 0u);
}

}  // namespace

const ShaderSpec& shader_spec(std::string_view shader) {
  for (const ShaderSpec& s : kShaders) {
    if (s.shader == shader) return s;
  }
  MF_ASSERT(false, "shader '", shader, "' has SPIR-V but no row in kShaders");
  return kShaders[0];
}

Pipelines::Pipelines(const Device& device) : device_(device) {}

Pipelines::~Pipelines() {
  const VkDevice d = device_.handle();
  for (auto& [name, p] : pipelines_) {
    vkDestroyPipeline(d, p->pipeline, nullptr);
    vkDestroyPipelineLayout(d, p->layout, nullptr);
  }
  for (auto& [n, layout] : set_layouts_) vkDestroyDescriptorSetLayout(d, layout, nullptr);
}

bool Pipelines::available(std::string_view variant) const {
  const SpirvVariant* v = find_spirv(variant);
  MF_ASSERT(v != nullptr, "no shader variant '", variant, "' (see cmake/shaders.cmake)");
  return (v->features & ~enabled_features(device_.features())) == 0;
}

VkDescriptorSetLayout Pipelines::set_layout(std::uint32_t bindings) {
  if (auto it = set_layouts_.find(bindings); it != set_layouts_.end()) return it->second;
  std::array<VkDescriptorSetLayoutBinding, 16> b{};
  MF_ASSERT(bindings <= b.size(), bindings, " bindings");
  for (std::uint32_t i = 0; i < bindings; ++i) {
    b[i].binding = i;
    b[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    b[i].descriptorCount = 1;
    b[i].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
  }
  auto info = vk_struct<VkDescriptorSetLayoutCreateInfo>(VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO);
  info.bindingCount = bindings;
  info.pBindings = b.data();
  VkDescriptorSetLayout layout = VK_NULL_HANDLE;
  check(vkCreateDescriptorSetLayout(device_.handle(), &info, nullptr, &layout), "vkCreateDescriptorSetLayout");
  set_layouts_.emplace(bindings, layout);
  return layout;
}

const Pipeline& Pipelines::get(std::string_view variant) {
  if (auto it = pipelines_.find(variant); it != pipelines_.end()) return *it->second;
  const SpirvVariant* v = find_spirv(variant);
  MF_ASSERT(v != nullptr, "no shader variant '", variant, "' (see cmake/shaders.cmake)");
  MF_ASSERT(available(variant), "variant '", variant, "' needs device features that are not enabled");
  auto p = std::make_unique<Pipeline>();
  p->name = std::string(variant);
  p->spec = shader_spec(v->shader);
  MF_ASSERT(p->spec.params_size <= device_.limits().max_push_constants, "parameters of ", variant);
  MF_ASSERT(p->spec.local_size <= device_.limits().max_invocations, "workgroup of ", variant);
  MF_ASSERT(p->spec.bindings <= device_.limits().max_storage_buffers, "storage buffers of ", variant);
  MF_ASSERT((p->spec.local_size & (p->spec.local_size - 1)) == 0, "reductions need a power-of-two workgroup");
  const VkDevice d = device_.handle();
  p->set_layout = set_layout(p->spec.bindings);

  VkPushConstantRange push{VK_SHADER_STAGE_COMPUTE_BIT, 0, p->spec.params_size};
  auto layout = vk_struct<VkPipelineLayoutCreateInfo>(VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO);
  layout.setLayoutCount = 1;
  layout.pSetLayouts = &p->set_layout;
  layout.pushConstantRangeCount = p->spec.params_size > 0 ? 1 : 0;
  layout.pPushConstantRanges = &push;
  check(vkCreatePipelineLayout(d, &layout, nullptr, &p->layout), "vkCreatePipelineLayout");

  auto module_info = vk_struct<VkShaderModuleCreateInfo>(VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO);
  module_info.codeSize = v->code.size_bytes();
  module_info.pCode = v->code.data();
  VkShaderModule module = VK_NULL_HANDLE;
  try {
    check(vkCreateShaderModule(d, &module_info, nullptr, &module), "vkCreateShaderModule");
    const VkSpecializationMapEntry entry{0, 0, sizeof(std::uint32_t)};
    const VkSpecializationInfo spec{1, &entry, sizeof(std::uint32_t), &p->spec.local_size};
    auto create = vk_struct<VkComputePipelineCreateInfo>(VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO);
    create.stage = vk_struct<VkPipelineShaderStageCreateInfo>(VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO);
    create.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
    create.stage.module = module;
    create.stage.pName = "main";
    create.stage.pSpecializationInfo = &spec;
    create.layout = p->layout;
    const VkResult result = vkCreateComputePipelines(d, VK_NULL_HANDLE, 1, &create, nullptr, &p->pipeline);
    vkDestroyShaderModule(d, module, nullptr);
    check(result, util::concat("vkCreateComputePipelines (", variant, ")"));
  } catch (...) {
    vkDestroyPipelineLayout(d, p->layout, nullptr);
    throw;
  }
  return *pipelines_.emplace(p->name, std::move(p)).first->second;
}

}  // namespace moeflux::backend::vk
