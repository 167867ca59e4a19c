#include "moeflux/arch/config_reader.h"

namespace moeflux::arch {

ConfigReader::ConfigReader(const nlohmann::json& config, std::string source)
    : config_(config), source_(std::move(source)) {
  MF_CHECK(config_.is_object(), ConfigError, "[read_config] ", source_, " is not a JSON object");
}

bool ConfigReader::has(const std::string& key) const {
  auto it = config_.find(key);
  return it != config_.end() && !it->is_null();
}

std::string ConfigReader::key_of(std::initializer_list<const char*> keys) const {
  for (const char* key : keys)
    if (has(key)) return key;
  return *keys.begin();
}

int ConfigReader::positive(const std::string& key) const {
  const int value = get<int>(key);
  MF_CHECK(value > 0, ConfigError, "[read_config] \"", key, "\" in ", source_, " must be positive, not ", value);
  return value;
}

double ConfigReader::rope_theta(double fallback) const {
  if (has("rope_theta")) return get<double>("rope_theta");
  for (const char* nested : {"rope_parameters", "rope_scaling"}) {
    auto it = config_.find(nested);
    if (it != config_.end() && it->is_object() && it->contains("rope_theta") && it->at("rope_theta").is_number())
      return it->at("rope_theta").get<double>();
  }
  return fallback;
}

const nlohmann::json& text_config(const nlohmann::json& config) {
  const auto it = config.find("text_config");
  return it != config.end() && it->is_object() ? *it : config;
}

}  // namespace moeflux::arch
