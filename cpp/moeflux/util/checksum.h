// A fast 64-bit checksum for detecting damaged files (state files): four FNV-1a lanes over 8-byte
// words, folded together with the length. Not cryptographic; it catches corruption, not tampering.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace moeflux::util {

class Checksum {
 public:
  void update(std::span<const std::byte> bytes);
  std::uint64_t value() const;  // of everything given to update(), in order, however it was split

 private:
  void word(std::uint64_t w);
  std::uint64_t lanes_[4] = {0xcbf29ce484222325ull, 0x84222325cbf29ce4ull, 0x9ce484222325cbf2ull, 0x2325cbf29ce48422ull};
  std::uint64_t words_ = 0, length_ = 0;
  std::uint64_t pending_ = 0;  // bytes of an unfinished word, little end first
  int pending_bytes_ = 0;
};

std::uint64_t checksum(std::span<const std::byte> bytes);

}  // namespace moeflux::util
