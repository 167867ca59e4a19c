// convert.h: a full conversion of the tiny checkpoint (per-expert and fused experts, f32 -> bf16,
// the "model.language_model." prefix), read back byte by byte; and the checkpoints it must refuse.
#include "moeflux/format/convert.h"
#include "fixtures.h"
#include "moeflux/format/packed_model.h"

namespace moeflux::format {
namespace {

using testing::SourceTensor;
using testing::TempDir;
using testing::Tiny;

std::string stored_bytes(const std::vector<float>& values, Dtype dtype) {
  return dtype == Dtype::f32 ? testing::f32_bytes(values) : testing::bf16_bytes(values);
}

std::string view_bytes(const TensorView& view) {
  return std::string(reinterpret_cast<const char*>(view.data), view.nbytes);
}

// Converts the tiny checkpoint into `dtype` and checks every stored byte against the source values.
void convert_and_check(std::optional<Dtype> dtype) {
  TempDir src;
  TempDir dst;
  testing::write_checkpoint(src.path(), testing::tiny_tensors());
  ConvertOptions options;
  options.dtype = dtype;
  std::vector<ConvertProgress> progress;
  options.progress = [&](const ConvertProgress& p) { progress.push_back(p); };
  const ModelLayout layout = testing::tiny_layout();
  const ConvertReport report = convert_checkpoint(src.path(), dst / "packed", "tiny_moe", layout, options);
  const Dtype stored = dtype.value_or(Dtype::f32);

  EXPECT_EQ(report.ignored, (std::vector<std::string>{"model.visual.patch_embed.weight", "mtp.fc.weight"}));
  ASSERT_FALSE(progress.empty());
  EXPECT_GE(progress.size(), 6u + 2u * Tiny::E);  // at least once per tensor and per expert record
  EXPECT_EQ(progress.back().bytes_done, progress.back().bytes_total);
  EXPECT_EQ(progress.back().bytes_total, report.bytes_written);

  const auto model = PackedModel::open(dst / "packed");
  model->check(layout);
  EXPECT_EQ(model->manifest().model_type, "tiny_moe");
  EXPECT_EQ(model->config()["model_type"], "tiny_moe");
  EXPECT_EQ(testing::read_file(dst / "packed/tokenizer.json"), testing::read_file(src / "tokenizer.json"));
  EXPECT_FALSE(model->has_dense("lm_head.weight"));  // optional and absent: skipped
  std::uint64_t previous_end = 0;
  for (const DenseTensorSpec& spec : layout.dense) {
    if (!spec.required) continue;
    const TensorView view = model->dense(spec.name);
    EXPECT_EQ(view.dtype, stored);
    EXPECT_EQ(view.shape, spec.shape);
    EXPECT_EQ(
        view_bytes(view),
        stored_bytes(testing::test_values(spec.name, static_cast<std::size_t>(element_count(spec.shape))),
                     stored))
        << spec.name;
    const std::uint64_t offset =
        static_cast<std::uint64_t>(view.data - model->dense(layout.dense[0].name).data);
    EXPECT_EQ(offset % kFileAlignment, 0u) << spec.name;
    EXPECT_GE(offset, previous_end);
    previous_end = offset + view.nbytes;
  }
  EXPECT_EQ(model->manifest().dense_size % kFileAlignment, 0u);

  for (int layer = 0; layer < 2; ++layer) {
    const ExpertLayerEntry* entry = model->expert_layer(layer);
    ASSERT_NE(entry, nullptr);
    EXPECT_EQ(entry->file, "experts/layer_00" + std::to_string(layer) + ".bin");
    EXPECT_EQ(entry->stride % kFileAlignment, 0u);
    const std::string file = testing::read_file(model->expert_file_path(*entry));
    ASSERT_EQ(file.size(), entry->file_size());
    for (int e = 0; e < Tiny::E; ++e) {
      for (const ExpertBlockEntry& block : entry->blocks) {
        EXPECT_EQ(block.offset % kBlockAlignment, 0u);
        EXPECT_EQ(block.dtype, stored);
        const std::size_t at = static_cast<std::size_t>(e * entry->stride + block.offset);
        EXPECT_EQ(file.substr(at, block.nbytes),
                  stored_bytes(testing::expert_values(layer, e, block.name), stored))
            << "layer " << layer << " expert " << e << " " << block.name;
      }
    }
  }
  EXPECT_EQ(model->expert_layer(2), nullptr);
}

TEST(Convert, ConvertsF32ToBf16) { convert_and_check(Dtype::bf16); }

TEST(Convert, KeepsTheSourceDtype) { convert_and_check(std::nullopt); }

TEST(Convert, WidensBf16ToF32) {
  TempDir src;
  TempDir dst;
  std::vector<SourceTensor> tensors = testing::tiny_tensors();
  for (SourceTensor& t : tensors) t.dtype = "BF16";
  testing::write_checkpoint(src.path(), tensors);
  ConvertOptions options;
  options.dtype = Dtype::f32;
  convert_checkpoint(src.path(), dst.path(), "tiny_moe", testing::tiny_layout(), options);
  const auto model = PackedModel::open(dst.path());
  const TensorView norm = model->dense("model.norm.weight");
  std::vector<float> expected = testing::test_values("model.norm.weight", Tiny::H);
  for (float& v : expected) v = bf16_to_f32(f32_to_bf16(v));
  EXPECT_EQ(view_bytes(norm), testing::f32_bytes(expected));
}

TEST(Convert, CanonicalNames) {
  EXPECT_EQ(canonical_tensor_name("model.language_model.layers.0.x"), "model.layers.0.x");
  EXPECT_EQ(canonical_tensor_name("model.layers.0.x"), "model.layers.0.x");
  EXPECT_EQ(canonical_tensor_name("lm_head.weight"), "lm_head.weight");
  EXPECT_EQ(canonical_tensor_name("model.visual.blocks.0"), "model.visual.blocks.0");
}

// Converts `tensors` with the tiny layout into a fresh directory.
void convert_tensors(const std::vector<SourceTensor>& tensors, const TempDir& src, const TempDir& dst) {
  testing::write_checkpoint(src.path(), tensors);
  convert_checkpoint(src.path(), dst.path(), "tiny_moe", testing::tiny_layout(), {});
}

std::vector<SourceTensor> without(const std::string& name) {
  std::vector<SourceTensor> tensors = testing::tiny_tensors();
  std::erase_if(tensors, [&](const SourceTensor& t) { return t.name == name; });
  return tensors;
}

TEST(Convert, RefusesAMissingTensor) {
  TempDir src;
  TempDir dst;
  EXPECT_THROW_WITH(convert_tensors(without("model.language_model.norm.weight"), src, dst), FormatError,
                    "tensor model.norm.weight (shape [6]) is missing from the checkpoint " + src.path());
  EXPECT_FALSE(std::filesystem::exists(dst / "moeflux.json"));
  EXPECT_THROW_WITH(
      convert_tensors(without("model.language_model.layers.0.mlp.experts.2.up_proj.weight"), src, dst),
      FormatError, "tensor model.layers.0.mlp.experts.2.up_proj.weight is missing");
  EXPECT_THROW_WITH(convert_tensors(without("model.language_model.layers.1.mlp.experts.down_proj"), src, dst),
                    FormatError, "model.layers.1.mlp.experts.0.down_proj.weight is missing");
}

TEST(Convert, RefusesAWrongShape) {
  TempDir src;
  TempDir dst;
  std::vector<SourceTensor> tensors = testing::tiny_tensors();
  for (SourceTensor& t : tensors) {
    if (t.name == "model.language_model.norm.weight") t = {t.name, {5}, testing::test_values("n", 5)};
  }
  EXPECT_THROW_WITH(convert_tensors(tensors, src, dst), FormatError,
                    "tensor model.language_model.norm.weight in " + src.path() +
                        "/model-00001-of-00002.safetensors has shape [5] but config.json implies [6]");
  tensors = testing::tiny_tensors();
  for (SourceTensor& t : tensors) {
    if (t.name.ends_with("gate_up_proj"))
      t = {t.name, {Tiny::E, Tiny::I, Tiny::H}, testing::test_values("g", 90)};
  }
  EXPECT_THROW_WITH(convert_tensors(tensors, src, dst), FormatError,
                    "has shape [3, 5, 6] but config.json implies [3, 10, 6]");
}

TEST(Convert, RefusesDtypesItCannotStore) {
  TempDir src;
  TempDir dst;
  std::vector<SourceTensor> tensors = testing::tiny_tensors();
  for (SourceTensor& t : tensors) {
    if (t.name == "model.language_model.norm.weight") t.dtype = "I64";
  }
  EXPECT_THROW_WITH(convert_tensors(tensors, src, dst), Unsupported, "has dtype I64");
}

TEST(Convert, RefusesTwoSourceNamesForOneTensor) {
  TempDir src;
  TempDir dst;
  std::vector<SourceTensor> tensors = testing::tiny_tensors();
  tensors.push_back({"model.norm.weight", {Tiny::H}, testing::test_values("n", Tiny::H)});
  EXPECT_THROW_WITH(convert_tensors(tensors, src, dst), FormatError,
                    "holds both model.language_model.norm.weight and model.norm.weight, which name the same tensor");
}

TEST(Convert, RefusesBadDestinationsAndSources) {
  TempDir src;
  TempDir dst;
  testing::write_checkpoint(src.path(), testing::tiny_tensors());
  const ModelLayout layout = testing::tiny_layout();
  convert_checkpoint(src.path(), dst.path(), "tiny_moe", layout, {});
  EXPECT_THROW_WITH(convert_checkpoint(src.path(), dst.path(), "tiny_moe", layout, {}), IoError,
                    "already holds a packed model; pass overwrite=True");
  ConvertOptions overwrite;
  overwrite.overwrite = true;
  overwrite.dtype = Dtype::bf16;
  convert_checkpoint(src.path(), dst.path(), "tiny_moe", layout, overwrite);
  EXPECT_EQ(PackedModel::open(dst.path())->dense("model.norm.weight").dtype, Dtype::bf16);

  EXPECT_THROW_WITH(convert_checkpoint(src.path(), src.path() + "/.", "tiny_moe", layout, overwrite),
                    ConfigError, "is the source directory");
  std::filesystem::remove(src / "config.json");
  EXPECT_THROW_WITH(convert_checkpoint(src.path(), dst / "new", "tiny_moe", layout, {}), ConfigError,
                    "config.json is missing");
  EXPECT_THROW_WITH(convert_checkpoint(src / "absent", dst / "new", "tiny_moe", layout, {}), IoError,
                    "is not a directory");
}

TEST(Convert, AcceptsMixtralExpertNames) {
  TempDir src;
  TempDir dst;
  std::vector<SourceTensor> tensors = testing::tiny_tensors();
  for (SourceTensor& t : tensors) {
    const std::string::size_type at = t.name.find(".gate_proj.weight");
    if (at != std::string::npos && t.name.find("layers.0.") != std::string::npos) {
      t.name = t.name.substr(0, at) + ".w1.weight";
    }
  }
  convert_tensors(tensors, src, dst);
  const auto model = PackedModel::open(dst.path());
  const ExpertLayerEntry* entry = model->expert_layer(0);
  ASSERT_NE(entry, nullptr);
  const std::string file = testing::read_file(model->expert_file_path(*entry));
  EXPECT_EQ(file.substr(static_cast<std::size_t>(2 * entry->stride), entry->blocks[0].nbytes),
            testing::f32_bytes(testing::expert_values(0, 2, "gate_proj")));
}

}  // namespace
}  // namespace moeflux::format
