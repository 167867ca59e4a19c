// packed_model.h: open() refuses directories whose files disagree with the manifest (truncated
// dense.bin, wrong-size expert files, missing manifest or config), and check(layout) refuses models
// converted for another config, each with a FormatError or ConfigError naming file and tensor.
#include <regex>

#include "fixtures.h"
#include "moeflux/format/convert.h"
#include "moeflux/format/packed_model.h"

namespace moeflux::format {
namespace {

using testing::TempDir;
using testing::Tiny;

// A tiny packed model in dst, converted once per test.
class PackedModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::write_checkpoint(src_.path(), testing::tiny_tensors());
    convert_checkpoint(src_.path(), dst_.path(), "tiny_moe", testing::tiny_layout(), {});
  }
  std::string dir() const { return dst_.path(); }
  TempDir src_;
  TempDir dst_;
};

TEST_F(PackedModelTest, OpensAConvertedModel) {
  const auto model = PackedModel::open(dir());
  EXPECT_EQ(model->dir(), dir());
  EXPECT_TRUE(model->has_dense("model.embed_tokens.weight"));
  EXPECT_EQ(model->dense("model.embed_tokens.weight").shape, (Shape{Tiny::V, Tiny::H}));
  EXPECT_EQ(model->expert_file_path(*model->expert_layer(1)), dir() + "/experts/layer_001.bin");
  EXPECT_THROW_WITH(model->dense("lm_head.weight"), FormatError, "tensor lm_head.weight is not in " + dir());
}

TEST_F(PackedModelTest, RefusesATruncatedDenseFile) {
  const std::uint64_t size = std::filesystem::file_size(dir() + "/dense.bin");
  std::filesystem::resize_file(dir() + "/dense.bin", size - 100);
  EXPECT_THROW_WITH(PackedModel::open(dir()), FormatError,
                    dir() + "/dense.bin has " + std::to_string(size - 100) + " bytes but " + dir() +
                        "/moeflux.json expects " + std::to_string(size));
  std::filesystem::remove(dir() + "/dense.bin");
  EXPECT_THROW_WITH(PackedModel::open(dir()), FormatError, "dense.bin is missing");
}

TEST_F(PackedModelTest, RefusesAnExpertFileOfTheWrongSize) {
  const std::string file = dir() + "/experts/layer_001.bin";
  const std::uint64_t size = std::filesystem::file_size(file);
  std::filesystem::resize_file(file, size + 4096);
  EXPECT_THROW_WITH(PackedModel::open(dir()), FormatError,
                    file + " (experts of layer 1) has " + std::to_string(size + 4096) + " bytes");
  std::filesystem::remove(file);
  EXPECT_THROW_WITH(PackedModel::open(dir()), FormatError, "layer_001.bin is missing");
}

TEST_F(PackedModelTest, RefusesMissingOrBadManifestAndConfig) {
  testing::write_file(dir() + "/moeflux.json",
                      std::regex_replace(testing::read_file(dir() + "/moeflux.json"),
                                         std::regex("\"version\": 1"), "\"version\": 7"));
  EXPECT_THROW_WITH(PackedModel::open(dir()), FormatError,
                    "is format version 7; this moeflux reads version 1");
  std::filesystem::remove(dir() + "/moeflux.json");
  EXPECT_THROW_WITH(
      PackedModel::open(dir()), FormatError,
      dir() + " is not a packed moeflux model (no moeflux.json); convert it with `moeflux convert");
  testing::write_file(dir() + "/config.json", "{\"model_type\": ");
  EXPECT_THROW_WITH(PackedModel::open(dir()), ConfigError, "config.json is not valid JSON");
  testing::write_file(dir() + "/config.json", "[1]");
  EXPECT_THROW_WITH(PackedModel::open(dir()), ConfigError, "config.json is not a JSON object");
  std::filesystem::remove(dir() + "/config.json");
  EXPECT_THROW_WITH(PackedModel::open(dir()), ConfigError, dir() + "/config.json is missing");
  EXPECT_THROW_WITH(read_config(dir()), ConfigError, "config.json is missing");
  EXPECT_THROW_WITH(PackedModel::open(dir() + "/nowhere"), IoError, "is not a directory");
}

TEST_F(PackedModelTest, CheckRefusesAnotherLayout) {
  const auto model = PackedModel::open(dir());
  ModelLayout layout = testing::tiny_layout();
  model->check(layout);

  layout.dense.push_back({"model.layers.0.self_attn.q_proj.weight", {6, 6}, true});
  EXPECT_THROW_WITH(model->check(layout), FormatError,
                    "tensor model.layers.0.self_attn.q_proj.weight of shape [6, 6] is missing from " + dir());
  layout.dense.back().required = false;
  model->check(layout);

  layout = testing::tiny_layout();
  layout.dense[0].shape = {8, 6};
  EXPECT_THROW_WITH(model->check(layout), FormatError,
                    "tensor model.embed_tokens.weight in " + dir() +
                        "/dense.bin has shape [7, 6] but config.json "
                        "implies [8, 6]");

  layout = testing::tiny_layout();
  layout.expert_layers[1].n_experts = 4;
  EXPECT_THROW_WITH(model->check(layout), FormatError,
                    "holds 3 experts but config.json implies 4 for layer 1");

  layout = testing::tiny_layout();
  layout.expert_layers[0].blocks[2].shape = {6, 4};
  EXPECT_THROW_WITH(
      model->check(layout), FormatError,
      "are gate_proj[5, 6] up_proj[5, 6] down_proj[6, 5] but config.json implies gate_proj[5, 6] "
      "up_proj[5, 6] down_proj[6, 4]");

  layout = testing::tiny_layout();
  layout.expert_layers.push_back({2, Tiny::E, "model.layers.2.mlp.experts", layout.expert_layers[0].blocks});
  EXPECT_THROW_WITH(model->check(layout), FormatError, "has no experts for layer 2");
}

}  // namespace
}  // namespace moeflux::format
