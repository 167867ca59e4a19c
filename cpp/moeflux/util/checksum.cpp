#include "moeflux/util/checksum.h"

#include <cstring>

namespace moeflux::util {
namespace {
constexpr std::uint64_t kPrime = 0x100000001b3ull;  // the 64-bit FNV prime
}

void Checksum::word(std::uint64_t w) {
  std::uint64_t& lane = lanes_[words_++ & 3];
  lane = (lane ^ w) * kPrime;
  lane ^= lane >> 29;  // the multiply only moves bits up; fold the high ones back down
}

void Checksum::update(std::span<const std::byte> bytes) {
  length_ += bytes.size();
  std::size_t i = 0;
  while (pending_bytes_ > 0 && i < bytes.size()) {  // finish a word begun by an earlier call
    pending_ |= static_cast<std::uint64_t>(bytes[i++]) << (8 * pending_bytes_);
    if (++pending_bytes_ == 8) {
      word(pending_);
      pending_ = 0;
      pending_bytes_ = 0;
    }
  }
  for (; i + 8 <= bytes.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, bytes.data() + i, 8);  // little-endian hosts only, as the rest of the format
    word(w);
  }
  for (; i < bytes.size(); ++i) pending_ |= static_cast<std::uint64_t>(bytes[i]) << (8 * pending_bytes_++);
}

std::uint64_t Checksum::value() const {
  std::uint64_t h = 0xcbf29ce484222325ull;
  const std::uint64_t tail[] = {lanes_[0], lanes_[1], lanes_[2], lanes_[3], pending_, length_};
  for (const std::uint64_t w : tail) {
    h = (h ^ w) * kPrime;
    h ^= h >> 29;
  }
  return h;
}

std::uint64_t checksum(std::span<const std::byte> bytes) {
  Checksum c;
  c.update(bytes);
  return c.value();
}

}  // namespace moeflux::util
