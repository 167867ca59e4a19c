// The Qwen3-Next / Qwen3.5 hybrid (transformers Qwen3NextForCausalLM, Qwen3_5MoeForCausalLM and the
// text part of Qwen3_5MoeForConditionalGeneration): Gated DeltaNet and gated full-attention layers,
// MoE with a gated shared expert, zero-centered norms. One decoder, switches read from config.json.
#pragma once

#include <memory>

#include <nlohmann/json_fwd.hpp>

#include "moeflux/arch/model.h"
#include "moeflux/format/model_layout.h"

namespace moeflux::arch::qwen3_next {

format::ModelLayout layout(const nlohmann::json& config);
std::unique_ptr<Model> create(const ModelContext& context);

}  // namespace moeflux::arch::qwen3_next
