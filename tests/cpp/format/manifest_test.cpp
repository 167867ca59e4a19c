// manifest.h: moeflux.json round trips, and every validation failure names the field and the file.
#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "moeflux/format/manifest.h"

namespace moeflux::format {
namespace {

using nlohmann::json;
using testing::TempDir;

Manifest sample_manifest() {
  Manifest m;
  m.model_type = "qwen3_moe";
  m.dense = {{"model.embed_tokens.weight", Dtype::bf16, {7, 6}, 0, 84},
             {"model.norm.weight", Dtype::f32, {6}, 4096, 24}};
  m.dense_size = 8192;
  ExpertLayerEntry layer;
  layer.layer = 3;
  layer.file = "experts/layer_003.bin";
  layer.n_experts = 5;
  layer.stride = 4096;
  layer.blocks = {{"gate_proj", Dtype::f16, {5, 6}, 0, 60},
                  {"up_proj", Dtype::f16, {5, 6}, 256, 60},
                  {"down_proj", Dtype::f16, {6, 5}, 512, 60}};
  m.expert_layers = {layer};
  return m;
}

void expect_equal(const Manifest& a, const Manifest& b) {
  EXPECT_EQ(a.to_json(), b.to_json());
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.model_type, b.model_type);
  EXPECT_EQ(a.dense_size, b.dense_size);
  ASSERT_EQ(a.dense.size(), b.dense.size());
  for (std::size_t i = 0; i < a.dense.size(); ++i) {
    EXPECT_EQ(a.dense[i].name, b.dense[i].name);
    EXPECT_EQ(a.dense[i].dtype, b.dense[i].dtype);
    EXPECT_EQ(a.dense[i].shape, b.dense[i].shape);
    EXPECT_EQ(a.dense[i].offset, b.dense[i].offset);
    EXPECT_EQ(a.dense[i].nbytes, b.dense[i].nbytes);
  }
  ASSERT_EQ(a.expert_layers.size(), b.expert_layers.size());
  EXPECT_EQ(a.expert_layers[0].file, b.expert_layers[0].file);
  EXPECT_EQ(a.expert_layers[0].blocks[2].offset, b.expert_layers[0].blocks[2].offset);
}

TEST(Manifest, RoundTripsThroughJsonAndFile) {
  const Manifest m = sample_manifest();
  const json j = m.to_json();
  EXPECT_EQ(j["format"], "moeflux-packed");
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["dense"]["file"], "dense.bin");
  EXPECT_EQ(j["dense"]["alignment"], 4096);
  EXPECT_EQ(j["experts"]["block_alignment"], 256);
  EXPECT_EQ(j["experts"]["layers"][0]["blocks"][1]["dtype"], "f16");
  EXPECT_EQ(j["dense"]["tensors"][0]["shape"], json::array({7, 6}));
  expect_equal(Manifest::from_json(j, "mem.json"), m);

  TempDir dir;
  m.write(dir / "moeflux.json");
  EXPECT_FALSE(std::filesystem::exists(dir / "moeflux.json.tmp"));
  expect_equal(Manifest::read(dir / "moeflux.json"), m);
}

TEST(Manifest, AlignsAndMeasuresRecords) {
  EXPECT_EQ(align_up(0, 4096), 0u);
  EXPECT_EQ(align_up(1, 4096), 4096u);
  EXPECT_EQ(align_up(4096, 4096), 4096u);
  EXPECT_EQ(align_up(4097, 256), 4352u);
  const Manifest m = sample_manifest();
  EXPECT_EQ(m.expert_layers[0].record_bytes(), 572u);
  EXPECT_EQ(m.expert_layers[0].file_size(), 5u * 4096u);
}

// Applies `edit` to a valid manifest's JSON and expects from_json to refuse it with `fragment`.
template <typename Edit>
void expect_refused(Edit edit, const std::string& fragment) {
  json j = sample_manifest().to_json();
  edit(j);
  EXPECT_THROW_WITH(Manifest::from_json(j, "/m/moeflux.json"), FormatError, fragment);
  EXPECT_THROW_WITH(Manifest::from_json(j, "/m/moeflux.json"), FormatError, "/m/moeflux.json");
}

TEST(Manifest, RefusesOtherVersionsAndFormats) {
  expect_refused([](json& j) { j["version"] = 2; },
                 "manifest /m/moeflux.json is format version 2; this moeflux reads version 1; re-convert");
  expect_refused([](json& j) { j["version"] = "1"; }, "\"version\" is not an integer");
  expect_refused([](json& j) { j["format"] = "gguf"; }, "has format \"gguf\"");
  EXPECT_THROW_WITH(Manifest::from_json(json::array(), "/m/moeflux.json"), FormatError,
                    "is not a JSON object");
}

TEST(Manifest, RefusesMissingFieldsAndWrongTypes) {
  expect_refused([](json& j) { j["dense"]["tensors"][1].erase("nbytes"); },
                 "field \"dense.tensors[1].nbytes\" is missing");
  expect_refused([](json& j) { j.erase("model_type"); }, "field \"model_type\" is missing");
  expect_refused([](json& j) { j["experts"]["layers"][0].erase("stride"); },
                 "field \"experts.layers[0].stride\" is missing");
  expect_refused([](json& j) { j["dense"]["tensors"][0]["offset"] = -4096; },
                 "\"dense.tensors[0].offset\" is -4096, not a non-negative integer");
  expect_refused([](json& j) { j["dense"]["tensors"] = 3; }, "\"dense.tensors\" is not an array");
  expect_refused([](json& j) { j["dense"]["tensors"][0] = "x"; }, "\"dense.tensors[0]\" is not an object");
  expect_refused(
      [](json& j) {
        j["dense"]["tensors"][0]["shape"] = json::array({7, -6});
      },
      "\"dense.tensors[0].shape\" holds -6");
  expect_refused([](json& j) { j["experts"]["layers"][0]["blocks"][0]["dtype"] = "q5"; },
                 "unknown dtype \"q5\"");
  expect_refused([](json& j) { j["experts"]["layers"][0]["n_experts"] = 0; },
                 "\"experts.layers[0].n_experts\" is 0");
  expect_refused([](json& j) { j["experts"]["layers"][0]["file"] = "../../etc/passwd"; },
                 "not a path inside");
}

TEST(Manifest, RefusesMisalignedOrOutOfBoundsData) {
  expect_refused([](json& j) { j["dense"]["tensors"][1]["offset"] = 4000; },
                 "\"dense.tensors[1].offset\" is 4000, not a multiple of 4096");
  expect_refused([](json& j) { j["experts"]["layers"][0]["stride"] = 6000; },
                 "not a positive multiple of 4096");
  expect_refused([](json& j) { j["experts"]["layers"][0]["blocks"][1]["offset"] = 100; },
                 "\"experts.layers[0].blocks[1].offset\" is 100, not a multiple of 256");
  expect_refused([](json& j) { j["dense"]["tensors"][0]["nbytes"] = 80; }, "needs 84");
  expect_refused([](json& j) { j["dense"]["size"] = 4100; }, "past the dense size (4100 bytes)");
  expect_refused([](json& j) { j["experts"]["layers"][0]["blocks"][2]["offset"] = 4096; },
                 "past the expert stride (4096 bytes)");
  expect_refused([](json& j) { j["experts"]["layers"][0]["blocks"][1]["offset"] = 0; }, "overlapping");
  expect_refused([](json& j) { j["dense"]["alignment"] = 512; }, "\"dense.alignment\" is not 4096");
  expect_refused([](json& j) { j["experts"]["block_alignment"] = 64; },
                 "\"experts.block_alignment\" is not 256");
  expect_refused(
      [](json& j) {
        j["experts"]["layers"].push_back(j["experts"]["layers"][0]);
        j["experts"]["layers"][1]["file"] = "experts/other.bin";
      },
      "\"experts.layers[1].layer\" is 3, not after the previous layer 3");
}

TEST(Manifest, ReadRefusesMissingAndMalformedFiles) {
  TempDir dir;
  EXPECT_THROW_WITH(Manifest::read(dir / "moeflux.json"), FormatError, "is missing");
  testing::write_file(dir / "moeflux.json", "{\"format\": ");
  EXPECT_THROW_WITH(Manifest::read(dir / "moeflux.json"), FormatError, "is not valid JSON");
}

}  // namespace
}  // namespace moeflux::format
