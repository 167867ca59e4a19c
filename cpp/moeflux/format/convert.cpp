// The converter: plans every tensor against the layout first (so a wrong checkpoint fails before a
// byte is written), then streams dense.bin and the expert files tensor by tensor from the mapped
// sources, copies config and tokenizer files, and writes moeflux.json last.
#include "moeflux/format/convert.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "moeflux/format/convert_detail.h"
#include "moeflux/format/detail.h"
#include "moeflux/format/packed_model.h"
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
  TensorView source;
  DenseEntry entry;
};

std::vector<DensePlan> plan_dense(const ModelLayout& layout, detail::Sources& sources,
                                  std::optional<Dtype> dtype, std::uint64_t* dense_size) {
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
    plan.source = sources.take(spec.name);
    MF_CHECK(
        plan.source.shape == spec.shape, FormatError, "[convert] tensor ", plan.source.name, " in ",
        sources.file_of(spec.name), " has shape ", shape_string(plan.source.shape),
        " but config.json implies ", shape_string(spec.shape),
        "; the checkpoint and its config.json disagree; use the config.json that came with the checkpoint");
    plan.entry.name = spec.name;
    plan.entry.dtype = dtype.value_or(plan.source.dtype);
    plan.entry.shape = spec.shape;
    plan.entry.offset = align_up(end, kFileAlignment);
    // The source's byte count was checked against its shape, so this product cannot overflow.
    plan.entry.nbytes = static_cast<std::uint64_t>(plan.source.numel()) * dtype_size(plan.entry.dtype);
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
  for (const DensePlan& plan : plans) {
    const std::uint64_t start = writer.position();
    writer.pad_to(plan.entry.offset);
    if (plan.entry.dtype == plan.source.dtype) {
      writer.write(plan.source.data, plan.source.nbytes);  // straight from the mapping
    } else {
      const auto count = static_cast<std::size_t>(plan.source.numel());
      const std::size_t src_size = dtype_size(plan.source.dtype);
      const std::size_t dst_size = dtype_size(plan.entry.dtype);
      converted.resize(std::min(count, kConvertChunk) * dst_size);
      for (std::size_t done = 0; done < count; done += kConvertChunk) {
        const std::size_t n = std::min(kConvertChunk, count - done);
        detail::convert_elements(plan.source.data + done * src_size, plan.source.dtype, n, plan.entry.dtype,
                                 converted.data());
        writer.write(converted.data(), n * dst_size);
      }
    }
    progress.advance(writer.position() - start, plan.entry.name);
  }
  const std::uint64_t start = writer.position();
  writer.pad_to(dense_size);
  writer.close();
  progress.advance(dense_size - start, std::string(kDenseFile));
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
  check_destination(src_dir, dst_dir, options.overwrite);
  read_config(src_dir);  // fail now, not after writing gigabytes, when config.json is unusable
  detail::Sources sources(src_dir);

  Manifest manifest;
  manifest.model_type = model_type;
  const std::vector<DensePlan> dense = plan_dense(layout, sources, options.dtype, &manifest.dense_size);
  for (const DensePlan& plan : dense) manifest.dense.push_back(plan.entry);
  std::vector<detail::ExpertLayerPlan> experts;
  std::uint64_t total = manifest.dense_size;
  for (const ExpertLayerSpec& spec : layout.expert_layers) {
    MF_ASSERT(experts.empty() || spec.layer > experts.back().entry.layer, "expert layers out of order at ",
              spec.layer);
    experts.push_back(detail::plan_expert_layer(spec, sources, options.dtype));
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

Sources::Sources(const std::string& dir) : dir_(dir), checkpoint_(SafetensorsCheckpoint::open(dir)) {
  for (const std::string& name : checkpoint_.names()) {
    const auto [it, inserted] = by_canonical_.emplace(canonical_tensor_name(name), name);
    MF_CHECK(inserted, FormatError, "[convert] the checkpoint ", dir, " holds both ", it->second, " and ",
             name, ", which name the same tensor; remove the duplicate shard");
  }
}

TensorView Sources::take(const std::string& canonical) {
  const auto it = by_canonical_.find(canonical);
  MF_ASSERT(it != by_canonical_.end(), "take() of absent tensor ", canonical);
  taken_.insert(canonical);
  return checkpoint_.get(it->second);
}

const std::string& Sources::file_of(const std::string& canonical) const {
  return checkpoint_.file_of(by_canonical_.at(canonical));
}

std::vector<std::string> Sources::ignored() const {
  std::vector<std::string> out;
  for (const auto& [canonical, name] : by_canonical_) {
    if (taken_.count(canonical) == 0) out.push_back(canonical);
  }
  return out;
}

void convert_elements(const std::byte* src, Dtype src_dtype, std::size_t count, Dtype dst_dtype,
                      std::byte* dst) {
  if (src_dtype == dst_dtype) {
    std::memcpy(dst, src, count * dtype_size(src_dtype));
    return;
  }
  constexpr std::size_t kChunk = 4096;
  float buffer[kChunk];
  for (std::size_t done = 0; done < count; done += kChunk) {
    const std::size_t n = std::min(kChunk, count - done);
    to_f32(src + done * dtype_size(src_dtype), src_dtype, n, buffer);
    from_f32(buffer, dst_dtype, n, dst + done * dtype_size(dst_dtype));
  }
}

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
