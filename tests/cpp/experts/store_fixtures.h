// Test fixtures of the expert store: tiny packed models written by hand (config.json, a manifest,
// a small dense.bin, expert files whose every byte is a known function of layer, expert and offset).
#pragma once

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/fixtures.h"
#include "moeflux/experts/expert_store.h"
#include "moeflux/format/manifest.h"
#include "moeflux/format/packed_model.h"

namespace moeflux::experts::testing {

using moeflux::testing::TempDir;

// One MoE layer of a test model: E experts whose blocks are bf16 [I, H], [I, H], [H, I].
struct LayerSpec {
  int layer = 0;
  int n_experts = 4;
  int hidden = 64;
  int intermediate = 32;
};

// The byte at `offset` of expert `expert`'s record in `layer` (padding included, never zero).
inline std::byte test_byte(int layer, int expert, std::uint64_t offset) {
  std::uint64_t h = (static_cast<std::uint64_t>(layer) * 1000003u + static_cast<std::uint64_t>(expert)) * 2654435761u;
  h ^= offset * 0x9e3779b97f4a7c15ull;
  h ^= h >> 29;
  return static_cast<std::byte>((h % 255u) + 1u);
}

// Writes a packed model with `layers` into `dir`; returns the manifest it wrote.
inline format::Manifest write_model(const std::string& dir, const std::vector<LayerSpec>& layers) {
  namespace fs = std::filesystem;
  fs::create_directories(dir + "/experts");
  std::ofstream(dir + "/config.json") << "{\"model_type\": \"tiny_moe\"}";
  format::Manifest m;
  m.model_type = "tiny_moe";
  m.dense_size = format::kFileAlignment;
  m.dense.push_back({"model.norm.weight", format::Dtype::bf16, {64}, 0, 128, 0, format::Dtype::bf16});
  std::ofstream(dir + "/dense.bin", std::ios::binary) << std::string(m.dense_size, '\0');
  for (const LayerSpec& spec : layers) {
    format::ExpertLayerEntry entry;
    entry.layer = spec.layer;
    entry.file = "experts/layer_" + std::string(spec.layer < 10 ? "00" : "0") + std::to_string(spec.layer) + ".bin";
    entry.n_experts = spec.n_experts;
    const std::uint64_t nbytes = 2ull * static_cast<std::uint64_t>(spec.hidden * spec.intermediate);
    std::uint64_t offset = 0;
    for (const char* name : {"gate_proj", "up_proj", "down_proj"}) {
      const format::Shape shape = std::string(name) == "down_proj" ? format::Shape{spec.hidden, spec.intermediate}
                                                                   : format::Shape{spec.intermediate, spec.hidden};
      entry.blocks.push_back({name, format::Dtype::bf16, shape, offset, nbytes, 0, format::Dtype::bf16});
      offset = format::align_up(offset + nbytes, format::kBlockAlignment);
    }
    entry.stride = format::align_up(entry.record_bytes(), format::kFileAlignment);
    std::string bytes(entry.file_size(), '\0');
    for (int e = 0; e < spec.n_experts; ++e) {
      for (std::uint64_t i = 0; i < entry.stride; ++i)
        bytes[e * entry.stride + i] = static_cast<char>(test_byte(spec.layer, e, i));
    }
    std::ofstream(dir + "/" + entry.file, std::ios::binary) << bytes;
    m.expert_layers.push_back(entry);
  }
  m.write(dir + "/moeflux.json");
  return m;
}

// Layers 0, 2 and 3 of a four-layer model (layer 1 dense), with two record strides.
inline std::vector<LayerSpec> default_layers() {
  return {{0, 6, 64, 32}, {2, 5, 40, 24}, {3, 6, 64, 32}};
}

// True when every byte of `record`'s blocks matches the file bytes of its expert.
template <typename Record>
::testing::AssertionResult record_matches(const Record& record, const format::ExpertLayerEntry& entry) {
  if (record.blocks.size() != entry.blocks.size()) return ::testing::AssertionFailure() << "block count";
  for (std::size_t b = 0; b < entry.blocks.size(); ++b) {
    const auto& view = record.blocks[b];
    if (view.name != entry.blocks[b].name || view.nbytes != entry.blocks[b].nbytes)
      return ::testing::AssertionFailure() << "block " << b << " is " << view.name;
    for (std::size_t i = 0; i < view.nbytes; ++i) {
      if (view.data[i] != test_byte(entry.layer, record.expert, entry.blocks[b].offset + i))
        return ::testing::AssertionFailure() << "byte " << i << " of " << view.name << " of expert " << record.expert
                                             << " of layer " << entry.layer;
    }
  }
  return ::testing::AssertionSuccess();
}

// Open file descriptors of this process: a store that leaks one shows here.
inline std::size_t open_fd_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// A parameterised store test's name for its read path.
inline std::string io_mode_name(const ::testing::TestParamInfo<IoMode>& param) {
  return param.param == IoMode::direct ? "direct" : "buffered";
}

// The model of default_layers() in a temporary directory and a store over it (default options:
// direct reads) whose first `refused` reads fail with EINVAL, as from a file system that refuses
// O_DIRECT; calls counts the reads.
struct RefusingStore {
  TempDir dir;
  std::shared_ptr<const format::PackedModel> model;
  int calls = 0;
  std::unique_ptr<ExpertStore> store;
  explicit RefusingStore(int refused) {
    write_model(dir.path(), default_layers());
    model = format::PackedModel::open(dir.path());
    StoreOptions options;
    options.fault_injector = [this, refused](int, int) { return ++calls <= refused ? EINVAL : 0; };
    store = std::make_unique<ExpertStore>(model, options);
  }
  RefusingStore(const RefusingStore&) = delete;  // the injector holds `this`
  RefusingStore& operator=(const RefusingStore&) = delete;
};

// The model of default_layers() in a temporary directory, and stores over it (room for every
// expert unless cache_bytes says otherwise) whose reads fail with faults_[{layer, expert}] while
// that entry is set; reads_ counts the reads. Parameterised by the read path.
class FaultyStoreTest : public ::testing::TestWithParam<IoMode> {
 protected:
  void SetUp() override {
    manifest_ = write_model(dir_.path(), default_layers());
    model_ = format::PackedModel::open(dir_.path());
  }
  std::unique_ptr<ExpertStore> open(std::uint64_t cache_bytes = 0, unsigned queue_depth = StoreOptions{}.queue_depth) {
    StoreOptions options;
    options.cache_bytes = cache_bytes;
    options.experts_per_token = 2;
    options.io = GetParam();
    options.queue_depth = queue_depth;
    options.fault_injector = [this](int layer, int expert) {
      ++reads_;
      const auto it = faults_.find({layer, expert});
      return it == faults_.end() ? 0 : it->second;
    };
    return std::make_unique<ExpertStore>(model_, options);
  }

  TempDir dir_;
  format::Manifest manifest_;
  std::shared_ptr<const format::PackedModel> model_;
  std::map<std::pair<int, int>, int> faults_;
  int reads_ = 0;
};

}  // namespace moeflux::experts::testing
