// manifest.h with quantized entries: group_size and scale_dtype round trip (and appear only on
// quantized entries), and every inconsistency in them is refused naming the field.
#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "moeflux/format/manifest.h"
#include "moeflux/format/quant.h"

namespace moeflux::format {
namespace {

using nlohmann::json;

// A q8 embedding [7, 64] and a q4 / q2 expert layer with H = 64, I = 32 in groups of 32.
Manifest quantized_manifest() {
  Manifest m;
  m.model_type = "qwen3_moe";
  const std::uint64_t embed = stored_nbytes(Dtype::q8, {7, 64}, {8, 64, Dtype::f16});
  m.dense = {{"model.embed_tokens.weight", Dtype::q8, {7, 64}, 0, embed, 64, Dtype::f16},
             {"model.norm.weight", Dtype::bf16, {64}, 4096, 128}};
  m.dense_size = 8192;
  ExpertLayerEntry layer;
  layer.layer = 1;
  layer.file = "experts/layer_001.bin";
  layer.n_experts = 4;
  layer.stride = 4096;
  const std::uint64_t gate = stored_nbytes(Dtype::q4, {32, 64}, {4, 32, Dtype::bf16});
  const std::uint64_t down = stored_nbytes(Dtype::q2, {64, 32}, {2, 32, Dtype::bf16});
  layer.blocks = {{"gate_proj", Dtype::q4, {32, 64}, 0, gate, 32, Dtype::bf16},
                  {"up_proj", Dtype::q4, {32, 64}, gate, gate, 32, Dtype::bf16},
                  {"down_proj", Dtype::q2, {64, 32}, 2 * gate, down, 32, Dtype::bf16}};
  m.expert_layers = {layer};
  return m;
}

TEST(ManifestQuant, RoundTripsQuantizedEntries) {
  const Manifest m = quantized_manifest();
  const json j = m.to_json();
  const json& embed = j["dense"]["tensors"][0];
  EXPECT_EQ(embed["dtype"], "q8");
  EXPECT_EQ(embed["group_size"], 64);
  EXPECT_EQ(embed["scale_dtype"], "f16");
  EXPECT_EQ(embed["nbytes"], 1024);  // 448 B of q, 14 B of scales, 14 B of biases, each 256-aligned
  EXPECT_FALSE(j["dense"]["tensors"][1].contains("group_size"));  // float entries carry no quant keys
  EXPECT_FALSE(j["dense"]["tensors"][1].contains("scale_dtype"));
  EXPECT_EQ(j["experts"]["layers"][0]["blocks"][2]["dtype"], "q2");

  const Manifest back = Manifest::from_json(j, "mem.json");
  EXPECT_EQ(back.to_json(), j);
  EXPECT_EQ(back.dense[0].group_size, 64);
  EXPECT_EQ(back.dense[0].scale_dtype, Dtype::f16);
  const ExpertBlockEntry& down = back.expert_layers[0].blocks[2];
  EXPECT_EQ(down.dtype, Dtype::q2);
  EXPECT_EQ(down.group_size, 32);
  EXPECT_EQ(down.scale_dtype, Dtype::bf16);
  EXPECT_EQ(down.nbytes, 1024u);  // 512 B of q, 128 B of scales, 128 B of biases
}

template <typename Edit>
void expect_refused(Edit edit, const std::string& fragment) {
  json j = quantized_manifest().to_json();
  edit(j);
  EXPECT_THROW_WITH(Manifest::from_json(j, "/m/moeflux.json"), FormatError, fragment);
}

TEST(ManifestQuant, RefusesInconsistentQuantization) {
  expect_refused([](json& j) { j["dense"]["tensors"][0].erase("group_size"); },
                 "field \"dense.tensors[0].group_size\" is missing");
  expect_refused([](json& j) { j["dense"]["tensors"][0].erase("scale_dtype"); },
                 "\"dense.tensors[0].scale_dtype\" is missing");
  expect_refused([](json& j) { j["dense"]["tensors"][0]["group_size"] = 48; },
                 "\"dense.tensors[0].group_size\" is 48, not 32, 64 or 128");
  expect_refused([](json& j) { j["dense"]["tensors"][0]["group_size"] = "64"; },
                 "\"dense.tensors[0].group_size\" is \"64\", not an integer");
  expect_refused([](json& j) { j["experts"]["layers"][0]["blocks"][0]["scale_dtype"] = "f32"; },
                 "\"experts.layers[0].blocks[0].scale_dtype\" is \"f32\", not \"bf16\" or \"f16\"");
  expect_refused([](json& j) { j["experts"]["layers"][0]["blocks"][0]["scale_dtype"] = "q4"; },
                 "not \"bf16\" or \"f16\"");
  expect_refused([](json& j) { j["experts"]["layers"][0]["blocks"][2]["group_size"] = 64; },
                 "has rows of 32 elements, not a multiple of group_size 64");
  expect_refused(
      [](json& j) {
        j["dense"]["tensors"][1]["dtype"] = "q4";
        j["dense"]["tensors"][1]["group_size"] = 64;
        j["dense"]["tensors"][1]["scale_dtype"] = "bf16";
      },
      "\"dense.tensors[1].shape\" is [64], but only 2-D tensors are quantized");
  expect_refused([](json& j) { j["dense"]["tensors"][0]["nbytes"] = 7 * 64 + 28; },
                 "is 476 but shape [7, 64] of dtype q8 needs 1024");
  expect_refused([](json& j) { j["experts"]["layers"][0]["blocks"][1]["dtype"] = "q8"; },
                 "\"experts.layers[0].blocks[1].nbytes\" is 1536 but shape [32, 64] of dtype q8 needs 2560");
  expect_refused(
      [](json& j) {
        j["dense"]["tensors"][0]["shape"] = json::array({std::uint64_t{1} << 62, 64});
      },
      "an unrepresentable count");
}

}  // namespace
}  // namespace moeflux::format
