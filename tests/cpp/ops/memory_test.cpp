// create_backend and the memory half of the interface: empty, upload/download through views,
// resident weights (borrowed in their stored dtype, downloaded widened exactly) and the errors of each.
#include <cstring>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include "harness.h"
#include "moeflux/backend/cpu/cpu_backend.h"
#include "moeflux/format/dtype.h"
#include "moeflux/util/error.h"

namespace moeflux::test {
namespace {

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }

TEST(CreateBackend, CpuByName) {
  auto backend = make_backend();
  EXPECT_EQ(backend->name(), "cpu");
}

TEST(CreateBackend, UnknownNameIsUnsupportedAndListsAvailable) {
  try {
    backend::create_backend({.name = "metal", .threads = 0, .device = ""});
    FAIL() << "expected Unsupported";
  } catch (const Unsupported& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("[create_backend] unknown backend 'metal'"), std::string::npos) << message;
    EXPECT_NE(message.find("available: cpu"), std::string::npos) << message;
  }
}

TEST(CreateBackend, NegativeThreadsIsConfigError) {
  EXPECT_THROW(backend::create_backend({.name = "cpu", .threads = -2, .device = ""}), ConfigError);
}

TEST(Memory, UploadDownloadThroughRowViews) {
  auto backend = make_backend();
  const std::vector<float> values = random_values(7 * 33, 1);
  Guarded t(*backend, {7, 33}, values);
  EXPECT_NE(t.tensor().offset(), 0);
  EXPECT_EQ(t.values(), values);
  // Rows 2..4 of the view: offset adds up, and writes stay inside those rows.
  Tensor middle = t.tensor().rows(2, 3);
  const std::vector<float> update = random_values(3 * 33, 2);
  backend->upload(update, middle);
  std::vector<float> got(update.size());
  backend->download(middle, got);
  EXPECT_EQ(got, update);
  const std::vector<float> all = t.values();
  for (std::size_t i = 0; i < all.size(); ++i) {
    const bool in_middle = i >= 2 * 33 && i < 5 * 33;
    EXPECT_EQ(all[i], in_middle ? update[i - 2 * 33] : values[i]) << i;
  }
  t.expect_guards_intact("upload");
}

TEST(Memory, EmptyIsAlignedAndChecksShape) {
  auto backend = make_backend();
  Tensor t = backend->empty({3, 5});
  auto* storage = dynamic_cast<backend::cpu::CpuStorage*>(t.storage());
  ASSERT_NE(storage, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(storage->data()) % 64, 0u);
  EXPECT_EQ(storage->size(), 15);
  EXPECT_THROW(backend->empty({3, -1}), ShapeError);
  Tensor none = backend->empty({0, 4});  // an empty tensor is legal
  backend->upload({}, none);
}

TEST(Memory, SizeMismatchAndBadTensorsThrow) {
  auto backend = make_backend();
  Tensor t = backend->empty({4, 4});
  std::vector<float> small(15);
  EXPECT_THROW(backend->upload(small, t), ShapeError);
  EXPECT_THROW(backend->download(t, small), ShapeError);
  Tensor undefined;
  EXPECT_THROW(backend->upload(small, undefined), ShapeError);
  struct Foreign : backend::Storage {};
  Tensor foreign(std::make_shared<Foreign>(), format::Dtype::f32, {15});
  EXPECT_THROW(backend->upload(small, foreign), Unsupported);
}

TEST(Memory, BorrowedTensorSharesCallerMemory) {
  auto backend = make_backend();
  std::vector<float> host = random_values(12, 3);
  Tensor t = backend::cpu::borrow_tensor(host.data(), {3, 4});
  std::vector<float> got(12);
  backend->download(t, got);
  EXPECT_EQ(got, host);
  backend->upload(std::vector<float>(12, 2.5f), t);
  EXPECT_EQ(host[11], 2.5f);
}

class Resident : public ::testing::TestWithParam<format::Dtype> {};

TEST_P(Resident, BorrowsTheStoredBytes) {
  const format::Dtype dtype = GetParam();
  auto backend = make_backend();
  std::vector<float> values = random_values(5 * 67, 4, -3.0f, 3.0f);
  values[0] = std::numeric_limits<float>::infinity();
  values[1] = -0.0f;
  values[2] = 1.0e-7f;  // an f16 subnormal
  std::vector<std::byte> bytes(values.size() * format::dtype_size(dtype));
  format::from_f32(values.data(), dtype, values.size(), bytes.data());
  const format::TensorView view{"w", dtype, {5, 67}, bytes.data(), bytes.size()};
  Tensor t = backend->resident(view);
  EXPECT_EQ(t.shape(), (Shape{5, 67}));
  EXPECT_EQ(t.dtype(), dtype);  // kept as stored: no widened copy
  const auto* storage = dynamic_cast<const backend::cpu::WeightStorage*>(t.storage());
  ASSERT_NE(storage, nullptr);
  EXPECT_EQ(storage->data(), bytes.data());
  // download widens exactly.
  std::vector<float> want(values.size()), got(values.size());
  format::to_f32(bytes.data(), dtype, values.size(), want.data());
  backend->download(t, got);
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(same_bits(got[i], want[i])) << i;
  // The tensor reads the caller's bytes, so a change to them shows.
  std::fill(bytes.begin(), bytes.end(), std::byte{0});
  backend->download(t, got);
  EXPECT_TRUE(same_bits(got[3], 0.0f));
}

TEST_P(Resident, TooFewBytesIsFormatError) {
  const format::Dtype dtype = GetParam();
  auto backend = make_backend();
  std::vector<std::byte> bytes(10 * format::dtype_size(dtype) - 1);
  const format::TensorView view{"model.norm.weight", dtype, {10}, bytes.data(), bytes.size()};
  try {
    backend->resident(view);
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("model.norm.weight"), std::string::npos) << e.what();
  }
  const format::TensorView null_view{"w", dtype, {10}, nullptr, 1000};
  EXPECT_THROW(backend->resident(null_view), FormatError);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, Resident,
                         ::testing::Values(format::Dtype::f32, format::Dtype::f16, format::Dtype::bf16),
                         [](const auto& test) { return std::string(format::dtype_name(test.param)); });

}  // namespace
}  // namespace moeflux::test
