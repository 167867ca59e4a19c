// moeflux.json, version 1 (docs/FORMAT.md): writing it, and reading it back with every field's
// presence, type, alignment and bounds checked (quantized entries too), so later code can trust
// offsets and sizes.
#include "moeflux/format/manifest.h"

#include <algorithm>
#include <filesystem>
#include <limits>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "moeflux/format/detail.h"
#include "moeflux/format/quant.h"
#include "moeflux/util/error.h"

namespace moeflux::format {

namespace {

using nlohmann::json;

constexpr std::string_view kReconvert = "re-convert the checkpoint with `moeflux convert SRC DST`";

// Typed access to one JSON object of the manifest; failures name the file and the field's path.
struct Object {
  const json& value;
  std::string field;  // e.g. "experts.layers[2]"; empty for the root
  const std::string& path;

  std::string name_of(std::string_view key) const {
    return field.empty() ? std::string(key) : util::concat(field, ".", key);
  }
  [[noreturn]] void fail(std::string_view key, const std::string& problem) const {
    throw FormatError(util::concat("[read_manifest] ", path, ": field \"", name_of(key), "\" ", problem,
                                   "; the manifest is corrupt; ", kReconvert));
  }
  const json& get(std::string_view key) const {
    const auto it = value.find(key);
    if (it == value.end()) fail(key, "is missing");
    return *it;
  }
  std::string string(std::string_view key) const {
    const json& v = get(key);
    if (!v.is_string()) fail(key, "is not a string");
    return v.get<std::string>();
  }
  std::uint64_t u64(std::string_view key) const {
    const json& v = get(key);
    if (!detail::is_non_negative_integer(v))
      fail(key, util::concat("is ", detail::describe(v), ", not a non-negative integer"));
    return v.get<std::uint64_t>();
  }
  int integer(std::string_view key, int min) const {
    const json& v = get(key);
    if (!v.is_number_integer() || v.get<std::int64_t>() < min ||
        v.get<std::int64_t>() > std::numeric_limits<int>::max()) {
      fail(key, util::concat("is ", detail::describe(v), ", not an integer of at least ", min));
    }
    return static_cast<int>(v.get<std::int64_t>());
  }
  const json& array(std::string_view key) const {
    const json& v = get(key);
    if (!v.is_array()) fail(key, "is not an array");
    return v;
  }
  Object object(std::string_view key) const {
    const json& v = get(key);
    if (!v.is_object()) fail(key, "is not an object");
    return Object{v, name_of(key), path};
  }
  Object element(std::string_view key, std::size_t i) const {
    const json& v = array(key)[i];
    const std::string element_field = util::concat(name_of(key), "[", i, "]");
    if (!v.is_object()) {
      throw FormatError(util::concat("[read_manifest] ", path, ": field \"", element_field,
                                     "\" is not an object; the manifest is corrupt; ", kReconvert));
    }
    return Object{v, element_field, path};
  }
};

// A quantized entry's group_size and scale_dtype, checked against what quant.h supports and its shape.
template <typename Entry>
void parse_quantization(const Object& o, Entry& entry) {
  entry.group_size = o.integer("group_size", 1);
  if (entry.group_size != 32 && entry.group_size != 64 && entry.group_size != 128)
    o.fail("group_size", util::concat("is ", entry.group_size, ", not 32, 64 or 128"));
  entry.scale_dtype =
      parse_dtype(o.string("scale_dtype"), util::concat(o.path, " field ", o.name_of("scale_dtype")));
  if (entry.scale_dtype != Dtype::bf16 && entry.scale_dtype != Dtype::f16)
    o.fail("scale_dtype",
           util::concat("is \"", dtype_name(entry.scale_dtype), "\", not \"bf16\" or \"f16\""));
  if (entry.shape.size() != 2)
    o.fail("shape", util::concat("is ", shape_string(entry.shape), ", but only 2-D tensors are quantized"));
  if (entry.shape[1] % entry.group_size != 0)
    o.fail("shape", util::concat("has rows of ", entry.shape[1], " elements, not a multiple of group_size ",
                                 entry.group_size));
}

// Bytes the entry takes; nullopt when its shape is too large to have a size (a corrupt manifest).
template <typename Entry>
std::optional<std::uint64_t> stored_nbytes_checked(const Entry& entry) {
  if (!is_quantized(entry.dtype)) return detail::checked_nbytes(entry.shape, dtype_size(entry.dtype));
  // Below 2^60 elements no quantized size can overflow (it is under 3 bytes per element).
  const auto bound = detail::checked_nbytes(entry.shape, 16);
  if (!bound) return std::nullopt;
  return stored_nbytes(entry.dtype, entry.shape,
                       {quant_bits(entry.dtype), entry.group_size, entry.scale_dtype});
}

// The fields DenseEntry and ExpertBlockEntry share, with nbytes checked against shape and dtype.
template <typename Entry>
Entry parse_tensor(const Object& o, std::uint64_t alignment) {
  Entry entry;
  entry.name = o.string("name");
  entry.dtype = parse_dtype(o.string("dtype"), util::concat(o.path, " field ", o.name_of("dtype")));
  for (const json& dim : o.array("shape")) {
    if (!detail::is_non_negative_integer(dim) ||
        dim.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      o.fail("shape", util::concat("holds ", detail::describe(dim), ", not a dimension"));
    }
    entry.shape.push_back(static_cast<std::int64_t>(dim.get<std::uint64_t>()));
  }
  entry.offset = o.u64("offset");
  if (entry.offset % alignment != 0) {
    o.fail("offset", util::concat("is ", entry.offset, ", not a multiple of ", alignment));
  }
  entry.nbytes = o.u64("nbytes");
  if (is_quantized(entry.dtype)) parse_quantization(o, entry);
  const auto expected = stored_nbytes_checked(entry);
  if (!expected || *expected != entry.nbytes) {
    o.fail("nbytes",
           util::concat("is ", entry.nbytes, " but shape ", shape_string(entry.shape), " of dtype ",
                        dtype_name(entry.dtype), " needs ",
                        expected ? std::to_string(*expected) : std::string("an unrepresentable count")));
  }
  return entry;
}

// Checks that `entry` lies after `previous_end` and ends by `limit`; returns its end.
template <typename Entry>
std::uint64_t check_extent(const Object& o, const Entry& entry, std::uint64_t previous_end,
                           std::uint64_t limit, std::string_view limit_name) {
  const auto end = detail::checked_add(entry.offset, entry.nbytes);
  if (entry.offset < previous_end) {
    o.fail("offset", util::concat("is ", entry.offset, ", overlapping the previous tensor, which ends at ",
                                  previous_end));
  }
  if (!end || *end > limit) {
    o.fail("nbytes",
           util::concat("puts the end of ", entry.name, " past ", limit_name, " (", limit, " bytes)"));
  }
  return *end;
}

void check_relative(const Object& o, std::string_view key, const std::string& file) {
  if (file.empty() || file.front() == '/' || file.find("..") != std::string::npos) {
    o.fail(key, util::concat("is \"", file, "\", not a path inside the model directory"));
  }
}

void parse_dense(const Object& dense, Manifest& m) {
  if (dense.string("file") != kDenseFile) dense.fail("file", util::concat("is not \"", kDenseFile, "\""));
  if (dense.u64("alignment") != kFileAlignment)
    dense.fail("alignment", util::concat("is not ", kFileAlignment));
  m.dense_size = dense.u64("size");
  std::set<std::string> names;
  std::uint64_t end = 0;
  for (std::size_t i = 0; i < dense.array("tensors").size(); ++i) {
    const Object t = dense.element("tensors", i);
    auto entry = parse_tensor<DenseEntry>(t, kFileAlignment);
    if (!names.insert(entry.name).second) t.fail("name", util::concat("repeats the tensor ", entry.name));
    end = check_extent(t, entry, end, m.dense_size, "the dense size");
    m.dense.push_back(std::move(entry));
  }
}

ExpertLayerEntry parse_layer(const Object& l) {
  ExpertLayerEntry layer;
  layer.layer = l.integer("layer", 0);
  layer.file = l.string("file");
  check_relative(l, "file", layer.file);
  layer.n_experts = l.integer("n_experts", 1);
  layer.stride = l.u64("stride");
  if (layer.stride == 0 || layer.stride % kFileAlignment != 0) {
    l.fail("stride", util::concat("is ", layer.stride, ", not a positive multiple of ", kFileAlignment));
  }
  if (!detail::checked_mul(layer.stride, static_cast<std::uint64_t>(layer.n_experts))) {
    l.fail("stride", "times n_experts overflows a 64-bit size");
  }
  const json& blocks = l.array("blocks");
  if (blocks.empty()) l.fail("blocks", "is empty");
  std::set<std::string> names;
  std::uint64_t end = 0;
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    const Object b = l.element("blocks", i);
    auto block = parse_tensor<ExpertBlockEntry>(b, kBlockAlignment);
    if (!names.insert(block.name).second) b.fail("name", util::concat("repeats the block ", block.name));
    end = check_extent(b, block, end, layer.stride, "the expert stride");
    layer.blocks.push_back(std::move(block));
  }
  return layer;
}

// group_size and scale_dtype appear only on quantized entries.
template <typename Entry>
json tensor_json(const Entry& t) {
  json j{{"name", t.name},
         {"dtype", std::string(dtype_name(t.dtype))},
         {"shape", t.shape},
         {"offset", t.offset},
         {"nbytes", t.nbytes}};
  if (is_quantized(t.dtype)) {
    j["group_size"] = t.group_size;
    j["scale_dtype"] = std::string(dtype_name(t.scale_dtype));
  }
  return j;
}

}  // namespace

std::uint64_t align_up(std::uint64_t value, std::uint64_t alignment) {
  MF_ASSERT(alignment != 0 && (alignment & (alignment - 1)) == 0, "alignment ", alignment,
            " is not a power of two");
  MF_ASSERT(value <= std::numeric_limits<std::uint64_t>::max() - (alignment - 1), "align_up overflows at ",
            value);
  return (value + alignment - 1) & ~(alignment - 1);
}

std::uint64_t ExpertLayerEntry::record_bytes() const {
  std::uint64_t end = 0;
  for (const ExpertBlockEntry& block : blocks) end = std::max(end, block.offset + block.nbytes);
  return end;
}

json Manifest::to_json() const {
  json dense_tensors = json::array();
  for (const DenseEntry& t : dense) dense_tensors.push_back(tensor_json(t));
  json layers = json::array();
  for (const ExpertLayerEntry& l : expert_layers) {
    json blocks = json::array();
    for (const ExpertBlockEntry& b : l.blocks) blocks.push_back(tensor_json(b));
    layers.push_back({{"layer", l.layer},
                      {"file", l.file},
                      {"n_experts", l.n_experts},
                      {"stride", l.stride},
                      {"blocks", blocks}});
  }
  return json{
      {"format", std::string(kFormatName)},
      {"version", version},
      {"model_type", model_type},
      {"dense",
       {{"file", std::string(kDenseFile)},
        {"size", dense_size},
        {"alignment", kFileAlignment},
        {"tensors", dense_tensors}}},
      {"experts", {{"alignment", kFileAlignment}, {"block_alignment", kBlockAlignment}, {"layers", layers}}}};
}

Manifest Manifest::from_json(const json& j, const std::string& path) {
  MF_CHECK(j.is_object(), FormatError, "[read_manifest] ", path, " is not a JSON object; ", kReconvert);
  const Object root{j, "", path};
  try {
    const std::string format = root.string("format");
    MF_CHECK(format == kFormatName, FormatError, "[read_manifest] ", path, " has format \"", format,
             "\", not \"", kFormatName, "\"; it is not a moeflux manifest; ", kReconvert);
    const json& version = root.get("version");
    MF_CHECK(version.is_number_integer(), FormatError, "[read_manifest] ", path,
             ": field \"version\" is not an integer; ", kReconvert);
    MF_CHECK(version.get<std::int64_t>() == kFormatVersion, FormatError, "[read_manifest] manifest ", path,
             " is format version ", version.get<std::int64_t>(), "; this moeflux reads version ",
             kFormatVersion, "; re-convert the checkpoint with this version");
    Manifest m;
    m.version = kFormatVersion;
    m.model_type = root.string("model_type");
    parse_dense(root.object("dense"), m);
    const Object experts = root.object("experts");
    if (experts.u64("alignment") != kFileAlignment)
      experts.fail("alignment", util::concat("is not ", kFileAlignment));
    if (experts.u64("block_alignment") != kBlockAlignment) {
      experts.fail("block_alignment", util::concat("is not ", kBlockAlignment));
    }
    std::set<std::string> files;
    for (std::size_t i = 0; i < experts.array("layers").size(); ++i) {
      const Object l = experts.element("layers", i);
      ExpertLayerEntry layer = parse_layer(l);
      if (!m.expert_layers.empty() && layer.layer <= m.expert_layers.back().layer) {
        l.fail("layer", util::concat("is ", layer.layer, ", not after the previous layer ",
                                     m.expert_layers.back().layer));
      }
      if (!files.insert(layer.file).second) l.fail("file", util::concat("repeats the file ", layer.file));
      m.expert_layers.push_back(std::move(layer));
    }
    return m;
  } catch (const json::exception& e) {  // a type we did not foresee; still a corrupt manifest
    throw FormatError(
        util::concat("[read_manifest] ", path, ": ", e.what(), "; the manifest is corrupt; ", kReconvert));
  }
}

Manifest Manifest::read(const std::string& path) {
  std::error_code ec;
  MF_CHECK(
      std::filesystem::is_regular_file(path, ec), FormatError, "[read_manifest] ", path,
      " is missing; the directory is not a packed moeflux model; convert it with `moeflux convert SRC DST`");
  json j;
  try {
    j = json::parse(detail::read_text_file(path, "read_manifest"));
  } catch (const json::exception& e) {
    throw FormatError(
        util::concat("[read_manifest] ", path, " is not valid JSON (", e.what(), "); ", kReconvert));
  }
  return from_json(j, path);
}

void Manifest::write(const std::string& path) const {
  detail::write_file_atomically(path, to_json().dump(2) + "\n", "write_manifest");
}

}  // namespace moeflux::format
