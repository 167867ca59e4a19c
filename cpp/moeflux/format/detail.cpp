// File helpers of the format layer. Output files get large buffered writes with every write and the
// final fsync checked, so a full disk surfaces as an IoError instead of a silently short file.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "moeflux/format/detail.h"
#include "moeflux/util/error.h"

namespace moeflux::format::detail {

namespace {
constexpr std::size_t kBufferBytes = std::size_t{8} << 20;

[[noreturn]] void throw_io(const std::string& op, const char* call, const std::string& path, int err) {
  throw IoError(util::concat("[", op, "] ", call, " ", path, " failed: ", std::strerror(err),
                             "; check the path, its permissions and the free space of its disk"));
}
}  // namespace

std::string read_text_file(const std::string& path, const std::string& op) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_io(op, "open", path, errno);
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw_io(op, "read", path, errno);
  return text.str();
}

void write_file_atomically(const std::string& path, std::string_view text, const std::string& op) {
  const std::string temp = path + ".tmp";
  FileWriter writer(temp, op);
  writer.write(text.data(), text.size());
  writer.close();
  if (std::rename(temp.c_str(), path.c_str()) != 0) throw_io(op, "rename", temp + " to " + path, errno);
}

FileWriter::FileWriter(std::string path, std::string op)
    : path_(std::move(path)), op_(std::move(op)), buffer_(kBufferBytes) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw_io(op_, "open", path_, errno);
}

FileWriter::~FileWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void FileWriter::write(const void* data, std::size_t nbytes) {
  const auto* bytes = static_cast<const std::byte*>(data);
  position_ += nbytes;
  if (used_ + nbytes <= buffer_.size()) {
    std::memcpy(buffer_.data() + used_, bytes, nbytes);
    used_ += nbytes;
    return;
  }
  flush();
  if (nbytes >= buffer_.size()) {
    write_fd(bytes, nbytes);  // large blocks go straight from the source mapping
  } else {
    std::memcpy(buffer_.data(), bytes, nbytes);
    used_ = nbytes;
  }
}

void FileWriter::pad_to(std::uint64_t offset) {
  MF_ASSERT(offset >= position_, "pad_to ", offset, " behind position ", position_);
  static constexpr std::byte kZeros[4096] = {};
  while (position_ < offset) {
    write(kZeros, static_cast<std::size_t>(std::min<std::uint64_t>(offset - position_, sizeof kZeros)));
  }
}

void FileWriter::flush() {
  write_fd(buffer_.data(), used_);
  used_ = 0;
}

void FileWriter::write_fd(const std::byte* data, std::size_t nbytes) {
  while (nbytes > 0) {
    const ssize_t n = ::write(fd_, data, nbytes);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_io(op_, "write", path_, errno);
    if (n == 0) throw_io(op_, "write", path_, ENOSPC);
    data += n;
    nbytes -= static_cast<std::size_t>(n);
  }
}

void FileWriter::close() {
  flush();
  // fsync before the manifest is written, so a crash cannot leave a manifest over missing data.
  if (::fsync(fd_) != 0) throw_io(op_, "fsync", path_, errno);
  const int fd = std::exchange(fd_, -1);
  if (::close(fd) != 0) throw_io(op_, "close", path_, errno);
}

}  // namespace moeflux::format::detail
