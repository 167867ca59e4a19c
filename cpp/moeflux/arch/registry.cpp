#include "moeflux/arch/registry.h"

#include <nlohmann/json.hpp>

#include "moeflux/arch/config_reader.h"
#include "moeflux/arch/qwen3_moe.h"
#include "moeflux/arch/qwen3_next.h"
#include "moeflux/util/error.h"

namespace moeflux::arch {
namespace {

const std::vector<Architecture>& architectures() {
  static const std::vector<Architecture> table = {
      {"qwen3_moe", qwen3_moe::layout, qwen3_moe::create},
      {"qwen2_moe", qwen3_moe::layout, qwen3_moe::create},
      {"qwen3_next", qwen3_next::layout, qwen3_next::create},
      {"qwen3_5_moe", qwen3_next::layout, qwen3_next::create},
      {"qwen3_5_moe_text", qwen3_next::layout, qwen3_next::create},
  };
  return table;
}

}  // namespace

std::vector<std::string> supported_model_types() {
  std::vector<std::string> names;
  for (const auto& a : architectures()) names.push_back(a.model_type);
  return names;
}

int experts_per_token(const nlohmann::json& config) {
  return ConfigReader(text_config(config), "config.json").positive("num_experts_per_tok");
}

const Architecture& find_architecture(const nlohmann::json& config) {
  MF_CHECK(config.is_object() && config.contains("model_type") && config["model_type"].is_string(),
           ConfigError, "[find_architecture] config.json has no \"model_type\" string; it is not a "
           "Hugging Face model config");
  const auto type = config["model_type"].get<std::string>();
  for (const auto& a : architectures())
    if (a.model_type == type) return a;
  std::string known;
  for (const auto& name : supported_model_types()) known += (known.empty() ? "" : ", ") + name;
  throw Unsupported(util::concat("[find_architecture] model_type \"", type, "\" is not supported; moeflux runs: ", known));
}

}  // namespace moeflux::arch
