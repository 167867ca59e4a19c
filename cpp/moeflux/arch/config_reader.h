// Typed access to config.json: a missing or mistyped required key raises ConfigError naming the key
// and the file; defaults exist only where transformers defines them (callers pass them explicitly).
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "moeflux/util/error.h"

namespace moeflux::arch {

class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& config, std::string source);

  bool has(const std::string& key) const;  // present and not null
  template <typename T>
  T get(const std::string& key) const;
  template <typename T>
  T get_or(const std::string& key, T fallback) const {
    return has(key) ? get<T>(key) : fallback;
  }
  // The first of `keys` present (transformers writes aliases, e.g. num_local_experts for
  // num_experts); the first key when none is, so that the error names the canonical one.
  std::string key_of(std::initializer_list<const char*> keys) const;

  // rope_theta: top-level or under rope_parameters / rope_scaling (both appear in real configs).
  double rope_theta(double fallback) const;
  const nlohmann::json& json() const { return config_; }
  const std::string& source() const { return source_; }

  // Positive integer check with a message naming the key.
  int positive(const std::string& key) const;

 private:
  const nlohmann::json& config_;
  std::string source_;
};

// The language model's part of a config.json: its "text_config" object in a multimodal checkpoint
// (Qwen3.5), else the whole config.
const nlohmann::json& text_config(const nlohmann::json& config);

template <typename T>
T ConfigReader::get(const std::string& key) const {
  MF_CHECK(has(key), ConfigError, "[read_config] ", source_, " has no \"", key,
           "\"; the model cannot be built without it");
  try {
    return config_.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    throw ConfigError(util::concat("[read_config] \"", key, "\" in ", source_, " has the wrong type (",
                                   config_.at(key).dump(), ")"));
  }
}

}  // namespace moeflux::arch
