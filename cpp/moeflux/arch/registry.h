// Model families by config.json "model_type": the one place that names them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "moeflux/arch/model.h"
#include "moeflux/format/model_layout.h"

namespace moeflux::arch {

struct Architecture {
  std::string model_type;
  format::ModelLayout (*layout)(const nlohmann::json& config);
  std::unique_ptr<Model> (*create)(const ModelContext& context);
};

// Throws ConfigError when config.json has no model_type, Unsupported when we do not know it.
const Architecture& find_architecture(const nlohmann::json& config);
std::vector<std::string> supported_model_types();
// The model's own top-k ("num_experts_per_tok", the key every supported family uses).
int experts_per_token(const nlohmann::json& config);

}  // namespace moeflux::arch
