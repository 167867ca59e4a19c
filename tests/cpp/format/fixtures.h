// Test fixtures of the format layer (with common/fixtures.h): safetensors files written byte by byte,
// and a tiny two-MoE-layer checkpoint (H=6, I=5, V=7, E=3) whose every value is a known function.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "common/fixtures.h"
#include "moeflux/format/dtype.h"
#include "moeflux/format/model_layout.h"
#include "moeflux/util/error.h"

namespace moeflux::format::testing {

using moeflux::testing::TempDir;

inline void write_file(const std::string& path, const std::string& bytes) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::string le64(std::uint64_t value) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i)
    out[static_cast<std::size_t>(i)] = static_cast<char>((value >> (8 * i)) & 0xffu);
  return out;
}

// A safetensors file from its parts: the 8-byte length (of `header` unless given), header, data.
inline std::string safetensors_bytes(const std::string& header, const std::string& data,
                                     std::int64_t header_length = -1) {
  const auto length = header_length >= 0 ? static_cast<std::uint64_t>(header_length) : header.size();
  return le64(length) + header + data;
}

inline std::string f32_bytes(const std::vector<float>& values) {
  std::string out(values.size() * 4, '\0');
  std::memcpy(out.data(), values.data(), out.size());  // the test hosts are little-endian
  return out;
}

inline std::string bf16_bytes(const std::vector<float>& values) {
  std::string out;
  for (float v : values) {
    const std::uint16_t bits = f32_to_bf16(v);
    out += static_cast<char>(bits & 0xffu);
    out += static_cast<char>(bits >> 8);
  }
  return out;
}

inline std::string shape_json(const Shape& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(shape[i]);
  }
  out += ']';
  return out;
}

struct SourceTensor {
  std::string name;
  Shape shape;
  std::vector<float> values;
  std::string dtype = "F32";  // F32 or BF16 (values rounded), or anything else as raw zero bytes
  std::string raw = {};       // when not empty, the data bytes as they are (U32 words, F16, ...)
};

// One safetensors file holding `tensors`, header written by hand (with __metadata__, padded to 8).
inline std::string safetensors_file(const std::vector<SourceTensor>& tensors) {
  std::string header = "{\"__metadata__\":{\"format\":\"pt\"}";
  std::string data;
  for (const SourceTensor& t : tensors) {
    std::string bytes;
    if (!t.raw.empty()) {
      bytes = t.raw;
    } else if (t.dtype == "F32") {
      bytes = f32_bytes(t.values);
    } else if (t.dtype == "BF16") {
      bytes = bf16_bytes(t.values);
    } else {
      bytes.assign(t.values.size() * 8, '\0');  // I64 and other 8-byte test types
    }
    header += ",\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":" + shape_json(t.shape) +
              ",\"data_offsets\":[" + std::to_string(data.size()) + "," +
              std::to_string(data.size() + bytes.size()) + "]}";
    data += bytes;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');
  return safetensors_bytes(header, data);
}

// A deterministic value with a fraction that bf16 must round, distinct per key and index.
inline float test_value(const std::string& key, std::size_t i) {
  std::uint32_t h = 2166136261u;
  for (char c : key) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
  h ^= static_cast<std::uint32_t>(i) * 2654435761u;
  h = (h ^ (h >> 15)) * 2246822519u;
  return static_cast<float>(static_cast<std::int32_t>(h % 200001u) - 100000) / 1234.567f;
}

inline std::vector<float> test_values(const std::string& key, std::size_t count) {
  std::vector<float> out(count);
  for (std::size_t i = 0; i < count; ++i) out[i] = test_value(key, i);
  return out;
}

struct Tiny {
  static constexpr int H = 6, I = 5, V = 7, E = 3;
};

// The layout an architecture would build for the tiny model; lm_head is optional (tied).
inline ModelLayout tiny_layout() {
  ModelLayout layout;
  layout.dense = {{"model.embed_tokens.weight", {Tiny::V, Tiny::H}, true},
                  {"model.layers.0.input_layernorm.weight", {Tiny::H}, true},
                  {"model.layers.0.mlp.gate.weight", {Tiny::E, Tiny::H}, true},
                  {"model.layers.1.input_layernorm.weight", {Tiny::H}, true},
                  {"model.layers.1.mlp.gate.weight", {Tiny::E, Tiny::H}, true},
                  {"model.norm.weight", {Tiny::H}, true},
                  {"lm_head.weight", {Tiny::V, Tiny::H}, false}};
  for (int layer = 0; layer < 2; ++layer) {
    layout.expert_layers.push_back({layer,
                                    Tiny::E,
                                    "model.layers." + std::to_string(layer) + ".mlp.experts",
                                    {{"gate_proj", {Tiny::I, Tiny::H}},
                                     {"up_proj", {Tiny::I, Tiny::H}},
                                     {"down_proj", {Tiny::H, Tiny::I}}}});
  }
  return layout;
}

// Source values of expert `e`'s block in `layer`, whatever form the checkpoint stores it in.
inline std::vector<float> expert_values(int layer, int e, const std::string& block) {
  return test_values(std::to_string(layer) + "." + std::to_string(e) + "." + block, Tiny::I * Tiny::H);
}

// The tiny checkpoint: "model.language_model." names, layer 0 per expert, layer 1 fused,
// plus tensors no layout uses (mtp.*, model.visual.*).
inline std::vector<SourceTensor> tiny_tensors() {
  std::vector<SourceTensor> out;
  for (const DenseTensorSpec& spec : tiny_layout().dense) {
    if (!spec.required) continue;
    const std::string name = "model.language_model." + spec.name.substr(6);
    out.push_back(
        {name, spec.shape, test_values(spec.name, static_cast<std::size_t>(element_count(spec.shape)))});
  }
  const std::string p0 = "model.language_model.layers.0.mlp.experts.";
  for (int e = 0; e < Tiny::E; ++e) {
    for (const char* block : {"gate_proj", "up_proj"}) {
      out.push_back(
          {p0 + std::to_string(e) + "." + block + ".weight", {Tiny::I, Tiny::H}, expert_values(0, e, block)});
    }
    out.push_back(
        {p0 + std::to_string(e) + ".down_proj.weight", {Tiny::H, Tiny::I}, expert_values(0, e, "down_proj")});
  }
  std::vector<float> gate_up;
  std::vector<float> down;
  for (int e = 0; e < Tiny::E; ++e) {
    for (const char* block : {"gate_proj", "up_proj"}) {
      const std::vector<float> v = expert_values(1, e, block);
      gate_up.insert(gate_up.end(), v.begin(), v.end());
    }
    const std::vector<float> v = expert_values(1, e, "down_proj");
    down.insert(down.end(), v.begin(), v.end());
  }
  const std::string p1 = "model.language_model.layers.1.mlp.experts.";
  out.push_back({p1 + "gate_up_proj", {Tiny::E, 2 * Tiny::I, Tiny::H}, gate_up});
  out.push_back({p1 + "down_proj", {Tiny::E, Tiny::H, Tiny::I}, down});
  out.push_back({"mtp.fc.weight", {2, 3}, test_values("mtp", 6)});
  out.push_back({"model.visual.patch_embed.weight", {4}, test_values("visual", 4)});
  return out;
}

// Writes config.json, tokenizer.json and `tensors` as two shards with an index.
inline void write_checkpoint(const std::string& dir, const std::vector<SourceTensor>& tensors) {
  std::vector<SourceTensor> shards[2];
  std::string weight_map;
  for (const SourceTensor& t : tensors) {
    const int shard = t.name.find("experts") != std::string::npos ? 1 : 0;
    shards[shard].push_back(t);
    if (!weight_map.empty()) weight_map += ',';
    weight_map.append("\"").append(t.name).append("\":\"model-0000");
    weight_map.append(std::to_string(shard + 1)).append("-of-00002.safetensors\"");
  }
  for (int s = 0; s < 2; ++s) {
    std::string name = dir;
    name.append("/model-0000").append(std::to_string(s + 1)).append("-of-00002.safetensors");
    write_file(name, safetensors_file(shards[s]));
  }
  write_file(dir + "/model.safetensors.index.json", "{\"metadata\":{},\"weight_map\":{" + weight_map + "}}");
  write_file(dir + "/config.json", "{\"model_type\":\"tiny_moe\",\"hidden_size\":6}");
  write_file(dir + "/tokenizer.json", "{\"model\":{}}");
}

}  // namespace moeflux::format::testing
