// A read-only memory mapping of a whole file; the dense weights of a packed model live in one.
#pragma once

#include <cstddef>
#include <string>

namespace moeflux::util {

class MappedFile {
 public:
  MappedFile() = default;
  // Maps `path` read-only; throws IoError naming the path and errno on failure.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void release();
  std::string path_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

// Size of a file in bytes; throws IoError when it cannot be read.
std::size_t file_size(const std::string& path);

}  // namespace moeflux::util
