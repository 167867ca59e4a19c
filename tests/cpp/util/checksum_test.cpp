// The state files' checksum: independent of how the bytes are split, sensitive to any change.
#include "moeflux/util/checksum.h"

#include <vector>

#include <gtest/gtest.h>

namespace moeflux::util {
namespace {

TEST(Checksum, SameValueHoweverTheInputIsSplit) {
  std::vector<std::byte> data(1001);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::byte>(i * 31 + 7);
  const std::uint64_t whole = checksum(data);
  for (const std::size_t cut : {1u, 3u, 8u, 13u, 500u, 1000u}) {
    Checksum c;
    c.update(std::span(data).first(cut));
    c.update(std::span(data).subspan(cut));
    EXPECT_EQ(c.value(), whole) << "split at " << cut;
  }
}

TEST(Checksum, EveryFlippedBitAndLengthChangesIt) {
  std::vector<std::byte> data(64, std::byte{0});
  const std::uint64_t zero = checksum(data);
  for (std::size_t i = 0; i < data.size(); ++i)
    for (int bit = 0; bit < 8; ++bit) {
      data[i] ^= static_cast<std::byte>(1 << bit);
      EXPECT_NE(checksum(data), zero) << "byte " << i << " bit " << bit;
      data[i] ^= static_cast<std::byte>(1 << bit);
    }
  EXPECT_NE(checksum(std::span(data).first(63)), zero);
}

}  // namespace
}  // namespace moeflux::util
