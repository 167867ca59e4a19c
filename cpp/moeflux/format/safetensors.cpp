// Reads Hugging Face safetensors checkpoints: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets}}, then the data. Every length and offset is checked against the
// file before a byte of data is touched; tensors of types we cannot store are listed, but get() refuses them.
#include "moeflux/format/safetensors.h"

#include <algorithm>
#include <filesystem>
#include <limits>
#include <set>
#include <string_view>
#include <system_error>

#include <nlohmann/json.hpp>

#include "moeflux/format/detail.h"
#include "moeflux/util/error.h"

namespace moeflux::format {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::string_view kIndexFile = "model.safetensors.index.json";
// The safetensors reference implementation refuses headers above 100 MB; so do we.
constexpr std::uint64_t kMaxHeaderBytes = std::uint64_t{100} << 20;

struct SourceDtype {
  std::string_view name;
  unsigned bits;
};
constexpr SourceDtype kSourceDtypes[] = {
    {"BOOL", 8}, {"U8", 8},   {"I8", 8},    {"F8_E5M2", 8}, {"F8_E4M3", 8}, {"F8_E8M0", 8}, {"I16", 16},
    {"U16", 16}, {"F16", 16}, {"BF16", 16}, {"I32", 32},    {"U32", 32},    {"F32", 32},    {"F64", 64},
    {"I64", 64}, {"U64", 64}, {"F4", 4},    {"F6_E2M3", 6}, {"F6_E3M2", 6},
};

const SourceDtype* find_source_dtype(std::string_view name) {
  for (const SourceDtype& dtype : kSourceDtypes) {
    if (dtype.name == name) return &dtype;
  }
  return nullptr;
}

bool storable(std::string_view name) { return name == "F32" || name == "F16" || name == "BF16"; }

[[noreturn]] void corrupt(const std::string& path, const std::string& problem) {
  throw FormatError(util::concat("[read_checkpoint] ", path, ": ", problem,
                                 "; the file is truncated or corrupt; re-download it"));
}

std::uint64_t read_u64_le(const std::byte* p) {
  std::uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | std::to_integer<std::uint64_t>(p[i]);
  return value;
}

Shape parse_shape(const json& value, const std::string& path, const std::string& name) {
  if (!value.is_array()) corrupt(path, util::concat("tensor ", name, " has no \"shape\" array"));
  Shape shape;
  for (const json& dim : value) {
    if (!detail::is_non_negative_integer(dim) ||
        dim.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      corrupt(path, util::concat("tensor ", name, " has an invalid dimension ", detail::describe(dim),
                                 " in its shape"));
    }
    shape.push_back(static_cast<std::int64_t>(dim.get<std::uint64_t>()));
  }
  return shape;
}

// The shard files of `dir`: those its index names, else every *.safetensors file, sorted.
std::vector<std::string> shard_files(const std::string& dir, json* weight_map) {
  const std::string index_path = detail::join_path(dir, std::string(kIndexFile));
  std::error_code ec;
  std::vector<std::string> files;
  if (fs::exists(index_path, ec)) {
    json index;
    try {
      index = json::parse(detail::read_text_file(index_path, "open_checkpoint"));
    } catch (const json::exception& e) {
      throw FormatError(util::concat("[open_checkpoint] ", index_path, " is not valid JSON (", e.what(),
                                     "); re-download the checkpoint's index file"));
    }
    MF_CHECK(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
             FormatError, "[open_checkpoint] ", index_path,
             " has no \"weight_map\" object; re-download the checkpoint's index file");
    std::set<std::string> unique;
    for (const auto& [name, file] : index["weight_map"].items()) {
      MF_CHECK(file.is_string(), FormatError, "[open_checkpoint] ", index_path, ": weight_map entry ", name,
               " is not a file name; re-download the checkpoint's index file");
      const std::string shard = file.get<std::string>();
      MF_CHECK(!shard.empty() && shard.front() != '/' && shard.find("..") == std::string::npos, FormatError,
               "[open_checkpoint] ", index_path, ": weight_map entry ", name, " names the file \"", shard,
               "\" outside the checkpoint; re-download the index file");
      unique.insert(shard);
    }
    for (const std::string& shard : unique) {
      const std::string path = detail::join_path(dir, shard);
      MF_CHECK(fs::is_regular_file(path, ec), FormatError, "[open_checkpoint] ", index_path,
               " lists the shard ", shard, ", which is missing from ", dir,
               "; finish downloading the checkpoint");
      files.push_back(path);
    }
    *weight_map = std::move(index["weight_map"]);
    return files;
  }
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& path = it->path();
    if (path.extension() == ".safetensors" && it->is_regular_file(ec)) files.push_back(path.string());
  }
  MF_CHECK(!ec, IoError, "[open_checkpoint] cannot list ", dir, ": ", ec.message(),
           "; check the path and its permissions");
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

SafetensorsCheckpoint SafetensorsCheckpoint::open(const std::string& dir) {
  std::error_code ec;
  MF_CHECK(fs::is_directory(dir, ec), IoError, "[open_checkpoint] ", dir,
           " is not a directory; pass the directory of a Hugging Face checkpoint");
  SafetensorsCheckpoint checkpoint;
  checkpoint.dir_ = dir;
  json weight_map;
  const std::vector<std::string> files = shard_files(dir, &weight_map);
  MF_CHECK(!files.empty(), FormatError, "[open_checkpoint] ", dir,
           " holds no *.safetensors files; pass a Hugging Face checkpoint directory with safetensors "
           "weights (convert .bin/.pt checkpoints with transformers first)");
  for (const std::string& file : files) checkpoint.add_file(file);
  for (const auto& [name, file] : weight_map.items()) {
    const auto it = checkpoint.entries_.find(name);
    MF_CHECK(it != checkpoint.entries_.end() && checkpoint.files_[it->second.file]->path() ==
                                                    detail::join_path(dir, file.get<std::string>()),
             FormatError, "[open_checkpoint] ", detail::join_path(dir, std::string(kIndexFile)),
             " places tensor ", name, " in ", file.get<std::string>(),
             ", but that shard does not hold it; re-download the checkpoint");
  }
  return checkpoint;
}

void SafetensorsCheckpoint::add_file(const std::string& path) {
  auto file = std::make_shared<util::MappedFile>(path);
  const std::uint64_t size = file->size();
  if (size < 8)
    corrupt(path, util::concat("the file has ", size, " bytes, fewer than the 8-byte header length"));
  const std::uint64_t header_bytes = read_u64_le(file->data());
  if (header_bytes > size - 8) {
    corrupt(path, util::concat("header length ", header_bytes, " runs past the end of the file (", size,
                               " bytes)"));
  }
  if (header_bytes > kMaxHeaderBytes) {
    corrupt(path, util::concat("header length ", header_bytes, " exceeds the 100 MiB safetensors limit"));
  }
  const auto* text = reinterpret_cast<const char*>(file->data() + 8);
  json header;
  try {
    header = json::parse(text, text + header_bytes);
  } catch (const json::exception& e) {
    corrupt(path, util::concat("the header is not valid JSON (", e.what(), ")"));
  }
  if (!header.is_object()) corrupt(path, "the header is not a JSON object");

  const std::uint64_t data_start = 8 + header_bytes;
  const std::uint64_t data_bytes = size - data_start;
  const std::size_t file_index = files_.size();
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") continue;
    if (!value.is_object())
      corrupt(path, util::concat("the header entry of tensor ", name, " is not an object"));
    const auto dtype_it = value.find("dtype");
    if (dtype_it == value.end() || !dtype_it->is_string()) {
      corrupt(path, util::concat("tensor ", name, " has no \"dtype\" string"));
    }
    const std::string dtype = dtype_it->get<std::string>();
    const SourceDtype* known = find_source_dtype(dtype);
    if (known == nullptr)
      corrupt(path, util::concat("tensor ", name, " has the unknown dtype \"", dtype, "\""));
    const Shape shape = parse_shape(value.contains("shape") ? value["shape"] : json(), path, name);

    const auto offsets_it = value.find("data_offsets");
    if (offsets_it == value.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
        !detail::is_non_negative_integer((*offsets_it)[0]) ||
        !detail::is_non_negative_integer((*offsets_it)[1])) {
      corrupt(path, util::concat("tensor ", name, " has no valid \"data_offsets\" pair"));
    }
    const auto begin = (*offsets_it)[0].get<std::uint64_t>();
    const auto end = (*offsets_it)[1].get<std::uint64_t>();
    if (begin > end || end > data_bytes) {
      corrupt(path, util::concat("data_offsets [", begin, ", ", end, "] of tensor ", name,
                                 " run past the end of the data (", data_bytes, " bytes)"));
    }
    if (known->bits % 8 == 0) {  // sub-byte types pack elements; their size rule is the producer's
      const auto expected = detail::checked_nbytes(shape, known->bits / 8);
      if (!expected || *expected != end - begin) {
        corrupt(path,
                util::concat("tensor ", name, " of shape ", shape_string(shape), " and dtype ", dtype,
                             " has ", end - begin, " bytes of data, not ",
                             expected ? std::to_string(*expected) : std::string("a representable count")));
      }
    }
    const auto existing = entries_.find(name);
    MF_CHECK(existing == entries_.end(), FormatError, "[open_checkpoint] tensor ", name, " appears in both ",
             files_[existing->second.file]->path(), " and ", path,
             "; the directory mixes two checkpoints; remove the stray shard");
    Entry entry;
    entry.file = file_index;
    entry.dtype = storable(dtype) ? dtype_from_safetensors(dtype, name) : Dtype::f32;
    entry.shape = shape;
    entry.begin = static_cast<std::size_t>(data_start + begin);
    entry.nbytes = static_cast<std::size_t>(end - begin);
    entry.source_dtype = dtype;
    entries_.emplace(name, std::move(entry));
  }
  files_.push_back(std::move(file));
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& [name, entry] : entries_) out.push_back(name);
  return out;
}

bool SafetensorsCheckpoint::contains(const std::string& name) const { return entries_.count(name) != 0; }

const SafetensorsCheckpoint::Entry& SafetensorsCheckpoint::entry(const std::string& name) const {
  const auto it = entries_.find(name);
  MF_CHECK(it != entries_.end(), FormatError, "[read_checkpoint] tensor ", name, " is not in the checkpoint ",
           dir_, "; check that the checkpoint matches its config.json");
  return it->second;
}

TensorView SafetensorsCheckpoint::get(const std::string& name) const {
  const Entry& e = entry(name);
  if (!storable(e.source_dtype))
    dtype_from_safetensors(e.source_dtype, "tensor " + name + " in " + file_of(name));
  TensorView view;
  view.name = name;
  view.dtype = e.dtype;
  view.shape = e.shape;
  view.data = files_[e.file]->data() + e.begin;
  view.nbytes = e.nbytes;
  return view;
}

TensorView SafetensorsCheckpoint::get_packed(const std::string& name, Dtype quantized) const {
  const Entry& e = entry(name);
  MF_CHECK(e.source_dtype == "U32", Unsupported, "[read_checkpoint] tensor ", name, " in ", file_of(name),
           " has dtype ", e.source_dtype,
           ", but the packed weight of an MLX-quantized tensor is U32; "
           "re-export the checkpoint with MLX or convert it from its unquantized original");
  TensorView view;
  view.name = name;
  view.dtype = quantized;
  view.shape = e.shape;
  view.data = files_[e.file]->data() + e.begin;
  view.nbytes = e.nbytes;
  return view;
}

const std::string& SafetensorsCheckpoint::source_dtype(const std::string& name) const {
  return entry(name).source_dtype;
}

const std::string& SafetensorsCheckpoint::file_of(const std::string& name) const {
  return files_[entry(name).file]->path();
}

}  // namespace moeflux::format
