// convert.h with quantization: expert_bits / dense_bits produce exactly quantize()'s sections; MLX
// triples (per expert and switch_mlp-stacked) import bit for bit or re-quantize; bad options and
// inconsistent MLX checkpoints are refused before anything is written.
#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "moeflux/format/convert.h"
#include "moeflux/format/packed_model.h"
#include "moeflux/format/quant.h"

namespace moeflux::format {
namespace {

using testing::SourceTensor;
using testing::TempDir;

constexpr std::int64_t H = 64, I = 32, V = 7, E = 3;

// A two-MoE-layer layout whose rows split into groups of 32 (down_proj rows have only 32 elements).
ModelLayout quant_layout_spec() {
  ModelLayout layout;
  layout.dense = {{"model.embed_tokens.weight", {V, H}, true, true},
                  {"model.layers.0.input_layernorm.weight", {H}, true, false},
                  {"model.layers.0.self_attn.q_proj.weight", {I, H}, true, true},
                  {"model.layers.0.mlp.gate.weight", {E, H}, true, false},
                  {"model.layers.1.mlp.gate.weight", {E, H}, true, false},
                  {"model.norm.weight", {H}, true, false},
                  {"lm_head.weight", {V, H}, true, true}};
  for (int layer = 0; layer < 2; ++layer) {
    layout.expert_layers.push_back({layer,
                                    E,
                                    "model.layers." + std::to_string(layer) + ".mlp.experts",
                                    {{"gate_proj", {I, H}}, {"up_proj", {I, H}}, {"down_proj", {H, I}}}});
  }
  return layout;
}

std::vector<float> values_of(const std::string& key, const Shape& shape) {
  std::vector<float> v = testing::test_values(key, static_cast<std::size_t>(element_count(shape)));
  for (float& x : v) x /= 64.0f;  // weights of a realistic size
  return v;
}

std::string expert_key(int layer, int e, const std::string& block) {
  return util::concat(layer, ".", e, ".", block);
}

Shape block_shape(const std::string& block) { return block == "down_proj" ? Shape{H, I} : Shape{I, H}; }

// A float checkpoint: every tensor F32, experts per expert.
std::vector<SourceTensor> float_tensors() {
  std::vector<SourceTensor> out;
  for (const DenseTensorSpec& spec : quant_layout_spec().dense)
    out.push_back({spec.name, spec.shape, values_of(spec.name, spec.shape)});
  for (int layer = 0; layer < 2; ++layer) {
    for (int e = 0; e < E; ++e) {
      for (const char* block : {"gate_proj", "up_proj", "down_proj"}) {
        out.push_back({util::concat("model.layers.", layer, ".mlp.experts.", e, ".", block, ".weight"),
                       block_shape(block), values_of(expert_key(layer, e, block), block_shape(block))});
      }
    }
  }
  return out;
}

std::vector<std::byte> quantized(const std::vector<float>& values, const Shape& shape, const QuantParams& p) {
  const QuantLayout l = quant_layout(shape, p);
  std::vector<std::byte> block(l.nbytes);
  quantize(values.data(), l, p, block.data());
  return block;
}

std::string view_bytes(const std::byte* data, std::uint64_t nbytes) {
  return std::string(reinterpret_cast<const char*>(data), static_cast<std::size_t>(nbytes));
}

std::string section(const std::vector<std::byte>& block, std::uint64_t offset, std::uint64_t nbytes) {
  return view_bytes(block.data() + offset, nbytes);
}

ConvertReport convert(const TempDir& src, const std::string& dst, const ConvertOptions& options) {
  return convert_checkpoint(src.path(), dst, "tiny_moe", quant_layout_spec(), options);
}

TEST(ConvertQuant, QuantizesExpertsAndQuantizableDenseTensors) {
  TempDir src;
  TempDir dst;
  testing::write_checkpoint(src.path(), float_tensors());
  ConvertOptions options;
  options.expert_bits = 4;
  options.dense_bits = 8;
  options.group_size = 32;
  convert(src, dst.path(), options);
  const auto model = PackedModel::open(dst.path());
  model->check(quant_layout_spec());

  for (const DenseTensorSpec& spec : quant_layout_spec().dense) {
    const TensorView view = model->dense(spec.name);
    if (!spec.quantizable) {  // norms and routers stay as they are
      EXPECT_EQ(view.dtype, Dtype::f32) << spec.name;
      EXPECT_EQ(view_bytes(view.data, view.nbytes), testing::f32_bytes(values_of(spec.name, spec.shape)));
      continue;
    }
    EXPECT_EQ(view.dtype, Dtype::q8) << spec.name;
    EXPECT_EQ(view.group_size, 32);
    EXPECT_EQ(view.scale_dtype, Dtype::bf16);
    EXPECT_EQ(view.shape, spec.shape);
    const QuantParams p{8, 32, Dtype::bf16};
    const std::vector<std::byte> expected = quantized(values_of(spec.name, spec.shape), spec.shape, p);
    ASSERT_EQ(view.nbytes, expected.size());
    EXPECT_EQ(view_bytes(view.data, view.nbytes), section(expected, 0, expected.size())) << spec.name;
  }
  for (int layer = 0; layer < 2; ++layer) {
    const ExpertLayerEntry* entry = model->expert_layer(layer);
    ASSERT_NE(entry, nullptr);
    EXPECT_EQ(entry->stride % kFileAlignment, 0u);
    const std::string file = testing::read_file(model->expert_file_path(*entry));
    for (const ExpertBlockEntry& block : entry->blocks) {
      EXPECT_EQ(block.dtype, Dtype::q4);
      EXPECT_EQ(block.group_size, 32);
      EXPECT_EQ(block.offset % kBlockAlignment, 0u);
      const QuantParams p{4, 32, Dtype::bf16};
      EXPECT_EQ(block.nbytes, stored_nbytes(Dtype::q4, block.shape, p));
      for (int e = 0; e < E; ++e) {
        const std::vector<std::byte> expected =
            quantized(values_of(expert_key(layer, e, block.name), block.shape), block.shape, p);
        const QuantLayout l = quant_layout(block.shape, p);
        const std::size_t at = static_cast<std::size_t>(e * entry->stride + block.offset);
        // Section by section, so a failure says which one moved.
        EXPECT_EQ(file.substr(at, l.scales_offset), section(expected, 0, l.scales_offset)) << block.name;
        EXPECT_EQ(file.substr(at + l.scales_offset, l.biases_offset - l.scales_offset),
                  section(expected, l.scales_offset, l.biases_offset - l.scales_offset));
        EXPECT_EQ(file.substr(at + l.biases_offset, l.nbytes - l.biases_offset),
                  section(expected, l.biases_offset, l.nbytes - l.biases_offset));
      }
    }
  }
}

TEST(ConvertQuant, ExpertBitsAloneLeaveDenseTensorsInTheirDtype) {
  TempDir src;
  TempDir dst;
  testing::write_checkpoint(src.path(), float_tensors());
  ConvertOptions options;
  options.expert_bits = 2;
  options.group_size = 32;
  options.scale_dtype = Dtype::f16;
  options.dtype = Dtype::bf16;
  convert(src, dst.path(), options);
  const auto model = PackedModel::open(dst.path());
  EXPECT_EQ(model->dense("model.embed_tokens.weight").dtype, Dtype::bf16);
  EXPECT_EQ(model->dense("model.embed_tokens.weight").group_size, 0);
  const ExpertBlockEntry& down = model->expert_layer(1)->blocks[2];
  EXPECT_EQ(down.dtype, Dtype::q2);
  EXPECT_EQ(down.scale_dtype, Dtype::f16);
  const std::string file = testing::read_file(model->expert_file_path(*model->expert_layer(1)));
  const QuantParams p{2, 32, Dtype::f16};
  const std::vector<std::byte> expected =
      quantized(values_of(expert_key(1, 2, "down_proj"), {H, I}), {H, I}, p);
  EXPECT_EQ(
      file.substr(static_cast<std::size_t>(2 * model->expert_layer(1)->stride + down.offset), down.nbytes),
      section(expected, 0, expected.size()));
}

TEST(ConvertQuant, RefusesBadOptionsBeforeWriting) {
  TempDir src;
  TempDir dst;
  testing::write_checkpoint(src.path(), float_tensors());
  const auto refuse = [&](auto edit, const std::string& fragment) {
    ConvertOptions options;
    options.group_size = 32;
    edit(options);
    EXPECT_THROW_WITH(convert(src, dst / "out", options), ConfigError, fragment);
    EXPECT_FALSE(std::filesystem::exists(dst / "out/moeflux.json"));
  };
  refuse([](ConvertOptions& o) { o.expert_bits = 5; }, "expert_bits: 5-bit quantization is not supported");
  refuse([](ConvertOptions& o) { o.dense_bits = 1; }, "dense_bits: 1-bit quantization is not supported");
  refuse([](ConvertOptions& o) { o.group_size = 48; }, "group size 48 is not supported; use 32, 64 or 128");
  refuse([](ConvertOptions& o) { o.scale_dtype = Dtype::f32; }, "scales must be bf16 or f16");
  refuse([](ConvertOptions& o) { o.dtype = Dtype::q4; }, "dtype q4 is not a float type");
  refuse(
      [](ConvertOptions& o) {
        o.expert_bits = 4;
        o.group_size = 64;
      },
      "expert block down_proj of layer 0 (model.layers.0.mlp.experts): rows of 32 elements do not split into "
      "groups of 64");
}

TEST(ConvertQuant, NamesTheDenseTensorAGroupDoesNotDivide) {
  TempDir src;
  TempDir dst;
  testing::write_checkpoint(src.path(), testing::tiny_tensors());  // H = 6
  ModelLayout layout = testing::tiny_layout();
  layout.dense[0].quantizable = true;
  ConvertOptions options;
  options.dense_bits = 8;
  EXPECT_THROW_WITH(convert_checkpoint(src.path(), dst.path(), "tiny_moe", layout, options), ConfigError,
                    "tensor model.embed_tokens.weight: rows of 6 elements do not split into groups of 64");
}

}  // namespace
}  // namespace moeflux::format
