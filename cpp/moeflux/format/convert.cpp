// The converter: checks the options and plans every tensor against the layout first (so a wrong
// checkpoint fails before a byte is written), then streams dense.bin and the expert files tensor by
// tensor from the mapped sources, quantizing where asked, copies config and tokenizer files, and
// writes moeflux.json last.
#include "moeflux/format/convert.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "moeflux/format/convert_detail.h"
#include "moeflux/format/detail.h"
#include "moeflux/format/packed_model.h"
#include "moeflux/format/quant.h"
#include "moeflux/util/error.h"

namespace moeflux::format {

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kLanguageModelPrefix = "model.language_model.";
// Files a model directory needs besides the weights; config.json is required, the rest copied if present.
constexpr std::string_view kCopiedFiles[] = {
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "added_tokens.json",
    "preprocessor_config.json",
};
constexpr std::size_t kConvertChunk = std::size_t{1} << 20;  // elements converted per write

void check_destination(const std::string& src, const std::string& dst, bool overwrite) {
  std::error_code ec;
  MF_CHECK(fs::is_directory(src, ec), IoError, "[convert] the source ", src,
           " is not a directory; pass the directory of a Hugging Face checkpoint");
  MF_CHECK(!(fs::exists(dst, ec) && fs::equivalent(src, dst, ec)), ConfigError, "[convert] the destination ",
           dst, " is the source directory; pass a new directory for the packed model");
  const std::string manifest = detail::join_path(dst, std::string(kManifestFile));
  MF_CHECK(overwrite || !fs::exists(manifest, ec), IoError, "[convert] destination ", dst,
           " already holds a packed model; pass overwrite=True to replace it, or choose another directory");
}

// Creates dst/experts; with an old model there, removes its manifest first so that it no longer
// looks complete, then the expert files it may not rewrite.
void prepare_destination(const std::string& dst) {
  std::error_code ec;
  fs::create_directories(detail::join_path(dst, "experts"), ec);
  MF_CHECK(!ec, IoError, "[convert] cannot create ", dst, "/experts: ", ec.message(),
           "; check the path and its permissions");
  const std::string manifest = detail::join_path(dst, std::string(kManifestFile));
  if (!fs::exists(manifest, ec)) return;
  fs::remove(manifest, ec);
  MF_CHECK(!ec, IoError, "[convert] cannot remove the old ", manifest, ": ", ec.message(),
           "; remove it by hand or choose another destination");
  for (fs::directory_iterator it(detail::join_path(dst, "experts"), ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.starts_with("layer_") && name.ends_with(".bin")) fs::remove(it->path(), ec);
  }
  MF_CHECK(!ec, IoError, "[convert] cannot remove the old expert files of ", dst, ": ", ec.message(),
           "; remove them by hand or choose another destination");
}

struct DensePlan {
  detail::SourceTensor source;
  detail::StoredType type;
  DenseEntry entry;
};

std::vector<DensePlan> plan_dense(const ModelLayout& layout, detail::Sources& sources,
                                  const ConvertOptions& options, std::uint64_t* dense_size) {
  std::vector<DensePlan> plans;
  std::uint64_t end = 0;
  for (const DenseTensorSpec& spec : layout.dense) {
    if (!sources.contains(spec.name)) {
      MF_CHECK(!spec.required, FormatError, "[convert] tensor ", spec.name, " (shape ",
               shape_string(spec.shape), ") is missing from the checkpoint ", sources.dir(),
               "; check that the checkpoint is complete and matches its config.json");
      continue;
    }
    DensePlan plan;
    plan.source = sources.take_tensor(spec.name);
    const TensorView& source = plan.source.view;
    MF_CHECK(
        source.shape == spec.shape, FormatError, "[convert] tensor ", source.name, " in ",
        sources.file_of(spec.name), " has shape ", shape_string(source.shape), " but config.json implies ",
        shape_string(spec.shape),
        "; the checkpoint and its config.json disagree; use the config.json that came with the checkpoint");
    plan.type = detail::stored_type(source, spec.quantizable, options.dense_bits, options);
    if (is_quantized(plan.type.dtype))
      check_quant_params(plan.type.quant, spec.shape.back(), "tensor " + spec.name);
    plan.entry.name = spec.name;
    plan.entry.dtype = plan.type.dtype;
    plan.entry.shape = spec.shape;
    if (is_quantized(plan.type.dtype)) {
      plan.entry.group_size = plan.type.quant.group_size;
      plan.entry.scale_dtype = plan.type.quant.scale_dtype;
    }
    plan.entry.offset = align_up(end, kFileAlignment);
    // The source's byte count was checked against its shape, so this cannot overflow.
    plan.entry.nbytes = detail::stored_size(plan.source, plan.type);
    end = plan.entry.offset + plan.entry.nbytes;
    plans.push_back(std::move(plan));
  }
  *dense_size = align_up(end, kFileAlignment);
  return plans;
}

void write_dense(const std::vector<DensePlan>& plans, std::uint64_t dense_size, const std::string& dst,
                 detail::ProgressReporter& progress) {
  detail::FileWriter writer(detail::join_path(dst, std::string(kDenseFile)), "convert");
  std::vector<std::byte> converted;
  std::vector<float> scratch;
  for (const DensePlan& plan : plans) {
    const TensorView& source = plan.source.view;
    const std::uint64_t start = writer.position();
    writer.pad_to(plan.entry.offset);
    if (plan.entry.dtype == source.dtype && !is_quantized(source.dtype)) {
      writer.write(source.data, source.nbytes);  // straight from the mapping
    } else if (!is_quantized(source.dtype) && !is_quantized(plan.entry.dtype)) {
      const auto count = static_cast<std::size_t>(source.numel());
      const std::size_t src_size = dtype_size(source.dtype);
      const std::size_t dst_size = dtype_size(plan.entry.dtype);
      converted.resize(std::min(count, kConvertChunk) * dst_size);
      for (std::size_t done = 0; done < count; done += kConvertChunk) {
        const std::size_t n = std::min(kConvertChunk, count - done);
        detail::convert_elements(source.data + done * src_size, source.dtype, n, plan.entry.dtype,
                                 converted.data());
        writer.write(converted.data(), n * dst_size);
      }
    } else {  // quantized on either side: the whole stored tensor at once (a fraction of its f32 size)
      converted.resize(static_cast<std::size_t>(plan.entry.nbytes));
      detail::encode_tensor(plan.source, plan.type, converted.data(), scratch);
      writer.write(converted.data(), converted.size());
    }
    progress.advance(writer.position() - start, plan.entry.name);
  }
  const std::uint64_t start = writer.position();
  writer.pad_to(dense_size);
  writer.close();
  progress.advance(dense_size - start, std::string(kDenseFile));
}

// Refuses unusable options before anything is read: a quantized `dtype`, unsupported bits, group
// sizes or scale dtypes (whether or not bits are requested, so a typo never passes silently).
void check_options(const ConvertOptions& options) {
  MF_CHECK(!options.dtype || !is_quantized(*options.dtype), ConfigError, "[convert] dtype ",
           dtype_name(*options.dtype),
           " is not a float type; pass f32, f16 or bf16 as dtype, and request "
           "quantization with expert_bits / dense_bits");
  check_quant_params({8, options.group_size, options.scale_dtype}, 0, "convert options");
  if (options.expert_bits)
    check_quant_params({*options.expert_bits, options.group_size, options.scale_dtype}, 0, "expert_bits");
  if (options.dense_bits)
    check_quant_params({*options.dense_bits, options.group_size, options.scale_dtype}, 0, "dense_bits");
}

void copy_model_files(const std::string& src, const std::string& dst) {
  for (std::string_view name : kCopiedFiles) {
    const std::string from = detail::join_path(src, std::string(name));
    std::error_code ec;
    if (!fs::is_regular_file(from, ec)) continue;
    const std::string to = detail::join_path(dst, std::string(name));
    fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
    MF_CHECK(!ec, IoError, "[convert] copying ", from, " to ", to, " failed: ", ec.message(),
             "; check that the destination is writable and has free space");
  }
}

}  // namespace

std::string canonical_tensor_name(const std::string& name) {
  if (name.starts_with(kLanguageModelPrefix)) return "model." + name.substr(kLanguageModelPrefix.size());
  return name;
}

ConvertReport convert_checkpoint(const std::string& src_dir, const std::string& dst_dir,
                                 const std::string& model_type, const ModelLayout& layout,
                                 const ConvertOptions& options) {
  check_options(options);
  check_destination(src_dir, dst_dir, options.overwrite);
  // Read now, not after writing gigabytes: an unusable config.json fails early.
  detail::Sources sources(src_dir, read_config(src_dir));

  Manifest manifest;
  manifest.model_type = model_type;
  const std::vector<DensePlan> dense = plan_dense(layout, sources, options, &manifest.dense_size);
  for (const DensePlan& plan : dense) manifest.dense.push_back(plan.entry);
  std::vector<detail::ExpertLayerPlan> experts;
  std::uint64_t total = manifest.dense_size;
  for (const ExpertLayerSpec& spec : layout.expert_layers) {
    MF_ASSERT(experts.empty() || spec.layer > experts.back().entry.layer, "expert layers out of order at ",
              spec.layer);
    experts.push_back(detail::plan_expert_layer(spec, sources, options));
    manifest.expert_layers.push_back(experts.back().entry);
    total += experts.back().entry.file_size();
  }

  prepare_destination(dst_dir);
  detail::ProgressReporter progress(options.progress, total);
  write_dense(dense, manifest.dense_size, dst_dir, progress);
  for (const detail::ExpertLayerPlan& plan : experts) detail::write_expert_layer(plan, dst_dir, progress);
  copy_model_files(src_dir, dst_dir);
  manifest.write(detail::join_path(dst_dir, std::string(kManifestFile)));  // last: the model is complete

  ConvertReport report;
  report.bytes_written = total;
  report.ignored = sources.ignored();
  return report;
}

namespace detail {

ProgressReporter::ProgressReporter(const std::function<void(const ConvertProgress&)>& callback,
                                   std::uint64_t total)
    : callback_(callback) {
  progress_.bytes_total = total;
}

void ProgressReporter::advance(std::uint64_t bytes, const std::string& current) {
  progress_.bytes_done += bytes;
  progress_.current = current;
  if (callback_) callback_(progress_);
}

}  // namespace detail

}  // namespace moeflux::format
