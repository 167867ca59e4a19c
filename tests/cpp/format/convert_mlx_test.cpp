// Importing MLX-quantized checkpoints: X.weight (U32 words) + X.scales + X.biases, per expert and
// stacked as switch_mlp, copied into the three sections bit for bit, a quantized router dequantized,
// re-quantized on request; and every inconsistency between the triples and config.json refused.
#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "moeflux/format/convert.h"
#include "moeflux/format/packed_model.h"
#include "moeflux/format/quant.h"

namespace moeflux::format {
namespace {

using nlohmann::json;
using testing::SourceTensor;
using testing::TempDir;

constexpr std::int64_t H = 64, I = 32, V = 7, E = 3;
const QuantParams kMlx{4, 32, Dtype::bf16};
const QuantParams kRouter{8, 32, Dtype::bf16};

ModelLayout layout() {
  ModelLayout l;
  l.dense = {{"model.embed_tokens.weight", {V, H}, true, true},
             {"model.layers.0.mlp.gate.weight", {E, H}, true, false},
             {"model.layers.1.mlp.gate.weight", {E, H}, true, false},
             {"model.norm.weight", {H}, true, false}};
  for (int layer = 0; layer < 2; ++layer) {
    l.expert_layers.push_back({layer,
                               E,
                               "model.layers." + std::to_string(layer) + ".mlp.experts",
                               {{"gate_proj", {I, H}}, {"up_proj", {I, H}}, {"down_proj", {H, I}}}});
  }
  return l;
}

Shape block_shape(const std::string& block) { return block == "down_proj" ? Shape{H, I} : Shape{I, H}; }

std::vector<float> values_of(const std::string& key, const Shape& shape) {
  std::vector<float> v = testing::test_values(key, static_cast<std::size_t>(element_count(shape)));
  for (float& x : v) x /= 64.0f;
  return v;
}

// The three sections of `values` quantized as MLX would store them (the layout quant.h shares).
struct Sections {
  std::string q, scales, biases;
};
Sections mlx_sections(const std::vector<float>& values, const Shape& shape, const QuantParams& p) {
  const QuantLayout l = quant_layout(shape, p);
  std::vector<std::byte> block(l.nbytes);
  quantize(values.data(), l, p, block.data());
  const auto text = [&](std::uint64_t at, std::uint64_t n) {
    return std::string(reinterpret_cast<const char*>(block.data() + at), static_cast<std::size_t>(n));
  };
  const std::uint64_t groups = static_cast<std::uint64_t>(shape[0] * l.groups_per_row) * 2;
  return {text(0, static_cast<std::uint64_t>(shape[0]) * l.row_bytes), text(l.scales_offset, groups),
          text(l.biases_offset, groups)};
}

// The MLX triple of `module` holding `parts` (one, or E stacked along a leading axis).
std::vector<SourceTensor> triple(const std::string& module, const std::vector<Sections>& parts,
                                 const Shape& shape, const QuantParams& p, bool stacked) {
  Shape words{shape[0], shape[1] * p.bits / 32};
  Shape groups{shape[0], shape[1] / p.group_size};
  if (stacked) {
    words.insert(words.begin(), static_cast<std::int64_t>(parts.size()));
    groups.insert(groups.begin(), static_cast<std::int64_t>(parts.size()));
  }
  SourceTensor w{module + ".weight", words, {}, "U32"}, s{module + ".scales", groups, {}, "BF16"},
      b{module + ".biases", groups, {}, "BF16"};
  for (const Sections& part : parts) {
    w.raw += part.q;
    s.raw += part.scales;
    b.raw += part.biases;
  }
  return {w, s, b};
}

std::string expert_key(int layer, int e, const std::string& block) {
  return util::concat(layer, ".", e, ".", block);
}

// Layer 0 per expert, layer 1 stacked as switch_mlp; the embedding 4-bit, the layer-0 router 8-bit.
std::vector<SourceTensor> mlx_tensors() {
  std::vector<SourceTensor> out;
  const auto add = [&](std::vector<SourceTensor> more) { out.insert(out.end(), more.begin(), more.end()); };
  add(triple("model.embed_tokens", {mlx_sections(values_of("embed", {V, H}), {V, H}, kMlx)}, {V, H}, kMlx,
             false));
  add(triple("model.layers.0.mlp.gate", {mlx_sections(values_of("router", {E, H}), {E, H}, kRouter)}, {E, H},
             kRouter, false));
  out.push_back({"model.layers.1.mlp.gate.weight", {E, H}, values_of("router1", {E, H})});
  out.push_back({"model.norm.weight", {H}, values_of("norm", {H})});
  for (const char* block : {"gate_proj", "up_proj", "down_proj"}) {
    std::vector<Sections> stacked;
    for (int e = 0; e < E; ++e) {
      const Sections s0 =
          mlx_sections(values_of(expert_key(0, e, block), block_shape(block)), block_shape(block), kMlx);
      add(triple(util::concat("model.layers.0.mlp.experts.", e, ".", block), {s0}, block_shape(block), kMlx,
                 false));
      stacked.push_back(
          mlx_sections(values_of(expert_key(1, e, block), block_shape(block)), block_shape(block), kMlx));
    }
    add(triple(std::string("model.layers.1.mlp.switch_mlp.") + block, stacked, block_shape(block), kMlx,
               true));
  }
  return out;
}

const char* kMlxConfig =
    R"({"model_type": "tiny_moe", "quantization": {"group_size": 32, "bits": 4,
        "model.layers.0.mlp.gate": {"group_size": 32, "bits": 8}, "model.norm": false}})";

void write_mlx(const TempDir& src, const std::vector<SourceTensor>& tensors,
               const std::string& config = kMlxConfig) {
  testing::write_checkpoint(src.path(), tensors);
  testing::write_file(src / "config.json", config);
}

std::string stored(const TensorView& view, std::uint64_t at, std::uint64_t n) {
  return std::string(reinterpret_cast<const char*>(view.data + at), static_cast<std::size_t>(n));
}

void expect_sections(const std::string& stored_block, const Sections& s, const Shape& shape,
                     const std::string& what) {
  const QuantLayout l = quant_layout(shape, kMlx);
  EXPECT_EQ(stored_block.substr(0, s.q.size()), s.q) << what;
  EXPECT_EQ(stored_block.substr(l.scales_offset, s.scales.size()), s.scales) << what;
  EXPECT_EQ(stored_block.substr(l.biases_offset, s.biases.size()), s.biases) << what;
}

TEST(ConvertMlx, CopiesTriplesBitForBit) {
  TempDir src;
  TempDir dst;
  write_mlx(src, mlx_tensors());
  const ConvertReport report = convert_checkpoint(src.path(), dst.path(), "tiny_moe", layout(), {});
  EXPECT_TRUE(report.ignored.empty());
  const auto model = PackedModel::open(dst.path());
  model->check(layout());

  const TensorView embed = model->dense("model.embed_tokens.weight");
  EXPECT_EQ(embed.dtype, Dtype::q4);
  EXPECT_EQ(embed.group_size, 32);
  expect_sections(stored(embed, 0, embed.nbytes), mlx_sections(values_of("embed", {V, H}), {V, H}, kMlx),
                  {V, H}, "embed");

  // The router may not be quantized: it is stored dequantized, in f32.
  const TensorView router = model->dense("model.layers.0.mlp.gate.weight");
  EXPECT_EQ(router.dtype, Dtype::f32);
  const QuantLayout rl = quant_layout({E, H}, kRouter);
  const std::vector<float> values = values_of("router", {E, H});
  std::vector<std::byte> block(rl.nbytes);
  quantize(values.data(), rl, kRouter, block.data());
  std::vector<float> expected(values.size());
  dequantize_rows(block.data(), rl, kRouter, 0, E, expected.data());
  EXPECT_EQ(stored(router, 0, router.nbytes), testing::f32_bytes(expected));

  for (int layer = 0; layer < 2; ++layer) {
    const ExpertLayerEntry* entry = model->expert_layer(layer);
    const std::string file = testing::read_file(model->expert_file_path(*entry));
    for (const ExpertBlockEntry& b : entry->blocks) {
      EXPECT_EQ(b.dtype, Dtype::q4);
      for (int e = 0; e < E; ++e) {
        const std::string at = file.substr(static_cast<std::size_t>(e * entry->stride + b.offset), b.nbytes);
        expect_sections(at, mlx_sections(values_of(expert_key(layer, e, b.name), b.shape), b.shape, kMlx),
                        b.shape, util::concat("layer ", layer, " expert ", e, " ", b.name));
      }
    }
  }
}

TEST(ConvertMlx, RequantizesWhenOtherBitsAreRequested) {
  TempDir src;
  TempDir dst;
  write_mlx(src, mlx_tensors(), R"({"quantization_config": {"group_size": 32, "bits": 4,
      "model.layers.0.mlp.gate": {"bits": 8}}})");  // the transformers spelling; group from the block
  ConvertOptions options;
  options.expert_bits = 2;
  options.group_size = 32;
  convert_checkpoint(src.path(), dst.path(), "tiny_moe", layout(), options);
  const auto model = PackedModel::open(dst.path());
  EXPECT_EQ(model->dense("model.embed_tokens.weight").dtype, Dtype::q4);  // dense_bits unset: copied
  const ExpertLayerEntry* entry = model->expert_layer(1);
  const ExpertBlockEntry& up = entry->blocks[1];
  EXPECT_EQ(up.dtype, Dtype::q2);
  const std::string file = testing::read_file(model->expert_file_path(*entry));
  // Within half a 2-bit scale of what the 4-bit source holds.
  const Sections s = mlx_sections(values_of(expert_key(1, 1, "up_proj"), {I, H}), {I, H}, kMlx);
  std::vector<float> source(static_cast<std::size_t>(I * H));
  dequantize_rows(QuantSections{reinterpret_cast<const std::byte*>(s.q.data()),
                                reinterpret_cast<const std::byte*>(s.scales.data()),
                                reinterpret_cast<const std::byte*>(s.biases.data())},
                  quant_layout({I, H}, kMlx), kMlx, 0, I, source.data());
  const QuantParams p2{2, 32, Dtype::bf16};
  const QuantLayout l2 = quant_layout({I, H}, p2);
  const auto* q2 = reinterpret_cast<const std::byte*>(file.data() + entry->stride + up.offset);
  std::vector<float> back(source.size());
  dequantize_rows(q2, l2, p2, 0, I, back.data());
  for (std::size_t i = 0; i < back.size(); ++i) {
    std::uint16_t scale = 0;
    std::memcpy(&scale, q2 + l2.scales_offset + (i / 32) * 2, 2);
    ASSERT_LE(std::fabs(back[i] - source[i]), bf16_to_f32(scale) / 2 * (1 + 1e-6f)) << i;
  }
}

// Replaces the tensor `name` of the MLX checkpoint (or drops it when `with` is empty).
std::vector<SourceTensor> edited(const std::string& name, std::vector<SourceTensor> with) {
  std::vector<SourceTensor> out = mlx_tensors();
  std::erase_if(out, [&](const SourceTensor& t) { return t.name == name; });
  out.insert(out.end(), with.begin(), with.end());
  return out;
}

template <typename Error>
void expect_refused(const std::vector<SourceTensor>& tensors, const std::string& config,
                    const std::string& fragment) {
  TempDir src;
  TempDir dst;
  write_mlx(src, tensors, config);
  EXPECT_THROW_WITH(convert_checkpoint(src.path(), dst.path(), "tiny_moe", layout(), {}), Error, fragment);
  EXPECT_FALSE(std::filesystem::exists(dst / "moeflux.json"));
}

TEST(ConvertMlx, RefusesInconsistentCheckpoints) {
  const std::vector<SourceTensor> good = mlx_tensors();
  expect_refused<FormatError>(good, R"({"model_type": "tiny_moe"})",
                              "model.embed_tokens.scales is beside it), but");
  expect_refused<FormatError>(
      good, R"({"quantization": {"group_size": 32, "bits": 4, "model.embed_tokens": false}})",
      "marks model.embed_tokens as not quantized");
  expect_refused<FormatError>(good, R"({"quantization": {"group_size": 32}})", "has no integer \"bits\"");
  expect_refused<Unsupported>(good, R"({"quantization": {"group_size": 32, "bits": 6}})",
                              "gives 6-bit weights");
  expect_refused<Unsupported>(good, R"({"quantization": {"group_size": 32, "bits": 4, "mode": "mxfp4"}})",
                              "mode \"mxfp4\"");
  // Words of 4-bit rows read as 8-bit: half the columns, so the scales do not fit.
  expect_refused<FormatError>(good, R"({"quantization": {"group_size": 32, "bits": 8}})",
                              "(8-bit, groups of 32) needs [7, 1] of bf16");
  expect_refused<FormatError>(edited("model.embed_tokens.biases", {}), kMlxConfig,
                              "has no model.embed_tokens.biases beside it");
  SourceTensor scales{"model.embed_tokens.scales", {V, 3}, {}, "BF16", std::string(V * 3 * 2, '\0')};
  expect_refused<FormatError>(edited(scales.name, {scales}), kMlxConfig, "needs [7, 2] of bf16");
  SourceTensor wide{"model.embed_tokens.scales", {V, 2}, std::vector<float>(V * 2, 1.0f)};
  expect_refused<Unsupported>(edited(wide.name, {wide}), kMlxConfig, "has dtype f32");
  SourceTensor words{"model.norm.weight", {H / 2}, {}, "U32", std::string(H * 2, '\0')};
  expect_refused<Unsupported>(edited(words.name, {words}), kMlxConfig, "has dtype U32");
}

}  // namespace
}  // namespace moeflux::format
