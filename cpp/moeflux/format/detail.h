// Private helpers of the format layer (not part of its interface): overflow-checked size arithmetic,
// path joining and the checked, buffered file writer that the converter and the manifest use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "moeflux/format/tensor_view.h"

namespace moeflux::format::detail {

inline std::optional<std::uint64_t> checked_mul(std::uint64_t a, std::uint64_t b) {
  std::uint64_t out = 0;
  if (__builtin_mul_overflow(a, b, &out)) return std::nullopt;
  return out;
}

inline std::optional<std::uint64_t> checked_add(std::uint64_t a, std::uint64_t b) {
  std::uint64_t out = 0;
  if (__builtin_add_overflow(a, b, &out)) return std::nullopt;
  return out;
}

// Bytes of a tensor of `shape` with `element_bytes`-byte elements; nullopt when a dimension is
// negative or the product overflows (a corrupt file must not wrap around a size check).
inline std::optional<std::uint64_t> checked_nbytes(const Shape& shape, std::uint64_t element_bytes) {
  std::optional<std::uint64_t> total = element_bytes;
  for (std::int64_t dim : shape) {
    if (dim < 0 || !total) return std::nullopt;
    total = checked_mul(*total, static_cast<std::uint64_t>(dim));
  }
  return total;
}

// True for a JSON integer >= 0; parsed text stores those as unsigned, values built in C++ may be signed.
template <typename Json>
bool is_non_negative_integer(const Json& value) {
  return value.is_number_unsigned() || (value.is_number_integer() && value.template get<std::int64_t>() >= 0);
}

// A JSON value for an error message: scalars shortened, containers only named (dumping a deeply
// nested value from a corrupt file would recurse without bound).
template <typename Json>
std::string describe(const Json& value) {
  if (value.is_array()) return "an array";
  if (value.is_object()) return "an object";
  std::string text = value.dump();
  return text.size() > 40 ? text.substr(0, 40) + "..." : text;
}

inline std::string join_path(const std::string& dir, const std::string& name) {
  if (dir.empty() || dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

// The whole file as text; IoError naming `op` and the path when it cannot be read.
std::string read_text_file(const std::string& path, const std::string& op);
// Writes `path` through "<path>.tmp" and a rename, so readers never see a half-written file.
void write_file_atomically(const std::string& path, std::string_view text, const std::string& op);

// Writes a new file (truncating an old one) through a large buffer; every failure is an IoError
// naming `op`, the path and errno. close() flushes and fsyncs; the destructor only closes.
class FileWriter {
 public:
  FileWriter(std::string path, std::string op);
  ~FileWriter();
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;

  void write(const void* data, std::size_t nbytes);
  void pad_to(std::uint64_t offset);  // writes zeros up to `offset`
  std::uint64_t position() const { return position_; }
  void close();

 private:
  void flush();
  void write_fd(const std::byte* data, std::size_t nbytes);
  std::string path_;
  std::string op_;
  int fd_ = -1;
  std::vector<std::byte> buffer_;
  std::size_t used_ = 0;
  std::uint64_t position_ = 0;
};

}  // namespace moeflux::format::detail
