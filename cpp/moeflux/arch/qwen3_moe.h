// Qwen3-MoE (transformers Qwen3MoeForCausalLM) and Qwen2-MoE (Qwen2MoeForCausalLM, shared expert
// with a sigmoid gate, no q/k norm): one decoder, a few switches read from config.json.
#pragma once

#include <memory>

#include <nlohmann/json_fwd.hpp>

#include "moeflux/arch/model.h"
#include "moeflux/format/model_layout.h"

namespace moeflux::arch::qwen3_moe {

format::ModelLayout layout(const nlohmann::json& config);
std::unique_ptr<Model> create(const ModelContext& context);

}  // namespace moeflux::arch::qwen3_moe
