// Device memory: uploads and downloads through views and in pieces, resident weights in their
// stored dtype (or widened without 16-bit storage), the sub-allocator, and deferred frees.
#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "moeflux/format/quant.h"
#include "moeflux/util/error.h"
#include "vulkan_harness.h"

namespace moeflux::test {
namespace {

using backend::vk::Allocation;
using backend::vk::MemoryKind;

TEST_F(VulkanTest, UploadDownloadThroughRowViews) {
  const std::vector<float> values = random_values(7 * 33, 1);
  Guarded t(*gpu_, {7, 33}, values);
  EXPECT_NE(t.tensor().offset(), 0);
  expect_same_bits(t.values(), values, "round trip");
  const std::vector<float> rows = random_values(3 * 33, 2);
  Tensor middle = t.tensor().rows(2, 3);
  gpu_->upload(rows, middle);
  std::vector<float> want = values;
  std::copy(rows.begin(), rows.end(), want.begin() + 2 * 33);
  expect_same_bits(t.values(), want, "rows 2..4");
  t.expect_guards_intact("upload into rows");
}

TEST_F(VulkanTest, LargeUploadsAndDownloadsGoInPieces) {
  const std::vector<float> values = random_values((6 << 20) + 3, 3);
  Tensor t = gpu_->empty({static_cast<std::int64_t>(values.size())});
  const std::uint64_t submits = gpu_->context().recorder.submits();
  gpu_->upload(values, t);
  std::vector<float> back(values.size());
  gpu_->download(t, back);
  expect_same_bits(back, values, "24 MiB round trip");
  EXPECT_GT(gpu_->context().recorder.submits(), submits + 1);  // a download submits per piece
}

// Several tensors come back with one submit and wait while they fit one piece of staging (a weight
// in its stored dtype on its own), in pieces past it; a wrong size is refused before anything runs.
TEST_F(VulkanTest, DownloadAllWaitsOnceForSmallTensors) {
  const std::vector<float> a_values = random_values(7 * 33, 7), b_values = random_values(5, 8);
  const StoredWeight w(format::Dtype::bf16, {3, 8}, random_values(24, 9));
  Guarded a(*gpu_, {7, 33}, a_values), b(*gpu_, {5}, b_values);
  const Tensor weight = gpu_->resident(w.view());
  gpu_->finish();
  std::vector<float> a_back(a_values.size()), b_back(b_values.size()), w_back(w.rounded.size());
  const auto& recorder = gpu_->context().recorder;
  std::uint64_t submits = recorder.submits();
  const backend::TensorDownload two[] = {{&a.tensor(), a_back}, {&b.tensor(), b_back}};
  gpu_->download_all(two);
  EXPECT_EQ(recorder.submits(), submits + 1);
  expect_same_bits(a_back, a_values, "a");
  expect_same_bits(b_back, b_values, "b");
  const backend::TensorDownload with_weight[] = {{&b.tensor(), b_back}, {&weight, w_back}};
  gpu_->download_all(with_weight);
  expect_same_bits(w_back, w.rounded, "the weight, widened");

  const std::vector<float> big = random_values((3 << 20) + 5, 10);  // 12 MiB each: two pieces
  Tensor c = gpu_->empty({static_cast<std::int64_t>(big.size())}), d = gpu_->empty({static_cast<std::int64_t>(big.size())});
  gpu_->upload(big, c);
  gpu_->upload(big, d);
  gpu_->finish();
  std::vector<float> c_back(big.size()), d_back(big.size());
  submits = recorder.submits();
  const backend::TensorDownload large[] = {{&c, c_back}, {&d, d_back}};
  gpu_->download_all(large);
  EXPECT_EQ(recorder.submits(), submits + 2);
  expect_same_bits(c_back, big, "c");
  expect_same_bits(d_back, big, "d");

  std::vector<float> short_back(4);
  const backend::TensorDownload wrong[] = {{&b.tensor(), b_back}, {&a.tensor(), short_back}};
  submits = recorder.submits();
  EXPECT_THROW(gpu_->download_all(wrong), ShapeError);
  EXPECT_EQ(recorder.submits(), submits);
}

// After the host waited for the GPU, the first batch is submitted after 8 dispatches and each next
// one after twice as many as the one before, up to 96: the GPU starts at once and never waits for
// the host to record a long batch.
TEST_F(VulkanTest, BatchesGrowAfterTheGpuWentIdle) {
  Tensor a = gpu_->empty({1, 64}), b = gpu_->empty({1, 64});
  gpu_->upload(random_values(64, 5), a);
  gpu_->finish();
  const auto& recorder = gpu_->context().recorder;
  const std::uint64_t start = recorder.submits();
  std::vector<int> submitted_after;  // the dispatch counts at which a batch went
  for (int i = 1; i <= 320; ++i) {
    const std::uint64_t before = recorder.submits();
    gpu_->add(a, a, b);  // one dispatch each
    if (recorder.submits() > before) submitted_after.push_back(i);
  }
  EXPECT_EQ(submitted_after, (std::vector<int>{8, 24, 56, 120, 216, 312}));
  std::vector<float> back(64);
  gpu_->download(b, back);  // waits: the next batch starts small again
  const std::uint64_t waited = recorder.submits();
  for (int i = 0; i < 8; ++i) gpu_->add(a, a, b);
  EXPECT_EQ(recorder.submits(), waited + 1);
  EXPECT_GT(waited, start);
}

class VulkanResident : public VulkanParamTest<OpCase> {};

TEST_P(VulkanResident, KeepsTheStoredDtypeWhereItCan) {
  const OpCase c = GetParam();
  const StoredWeight w(c.dtype, {5, 67}, random_values(5 * 67, 4));
  const Tensor t = gpu_->resident(w.view());
  const bool kept = c.dtype == format::Dtype::f32 || gpu_->device().features().storage16;
  EXPECT_EQ(t.dtype(), kept ? c.dtype : format::Dtype::f32);
  std::vector<float> back(w.rounded.size());
  gpu_->download(t, back);
  expect_same_bits(back, w.rounded, "resident");
}

INSTANTIATE_TEST_SUITE_P(Dtypes, VulkanResident,
                         ::testing::ValuesIn(op_cases({format::Dtype::f32, format::Dtype::f16, format::Dtype::bf16})),
                         op_case_name);

TEST_F(VulkanTest, QuantizedWeightsAreUploadedAsTheyAre) {
  const format::QuantParams params{.bits = 4, .group_size = 64, .scale_dtype = format::Dtype::bf16};
  const format::Shape shape{3, 128};
  const format::QuantLayout layout = format::quant_layout(shape, params);
  const std::vector<float> values = random_values(3 * 128, 5);
  std::vector<std::byte> bytes(layout.nbytes);
  format::quantize(values.data(), layout, params, bytes.data());
  format::TensorView view{"q.weight", format::Dtype::q4, shape, bytes.data(), bytes.size(), 64, format::Dtype::bf16};
  const Tensor t = gpu_->resident(view);
  EXPECT_EQ(t.dtype(), format::Dtype::q4);
  std::vector<float> want(values.size()), back(values.size());
  format::dequantize_rows(bytes.data(), layout, params, 0, 3, want.data());
  gpu_->download(t, back);
  expect_same_bits(back, want, "quantized resident");
}

TEST_F(VulkanTest, WrongTensorsAreRejected) {
  const StoredWeight w(format::Dtype::f16, {4}, random_values(4, 6));
  Tensor weight = gpu_->resident(w.view());
  const std::vector<float> four(4, 1.0f);
  if (weight.dtype() != format::Dtype::f32) {
    EXPECT_THROW(gpu_->upload(four, weight), Unsupported);
  }
  Tensor on_cpu = cpu_->empty({4});
  Tensor on_gpu = gpu_->empty({4});
  EXPECT_THROW(gpu_->add(on_cpu, on_gpu, on_gpu), Unsupported);
  EXPECT_THROW(gpu_->upload(std::vector<float>(3), on_gpu), ShapeError);
  Tensor undefined;
  EXPECT_THROW(gpu_->add(undefined, on_gpu, on_gpu), ShapeError);
}

TEST_F(VulkanTest, TheAllocatorReusesAndCoalesces) {
  auto& memory = gpu_->context().memory;
  const auto before = memory.bytes_in_use(MemoryKind::device);
  const Allocation a = memory.allocate(MemoryKind::device, 1000, "a");
  const Allocation b = memory.allocate(MemoryKind::device, 1000, "b");
  const Allocation c = memory.allocate(MemoryKind::device, 1000, "c");
  EXPECT_EQ(b.offset % memory.alignment(), 0u);
  memory.free(b);
  const Allocation b2 = memory.allocate(MemoryKind::device, 900, "b2");
  EXPECT_EQ(b2.block, b.block);
  EXPECT_EQ(b2.offset, b.offset);  // first fit: the hole b left
  memory.free(a);
  memory.free(b2);
  const Allocation big = memory.allocate(MemoryKind::device, 2 * b.size, "a + b");
  EXPECT_EQ(big.offset, a.offset);  // a and b's holes coalesced
  memory.free(big);
  memory.free(c);
  EXPECT_EQ(memory.bytes_in_use(MemoryKind::device), before);
  const Allocation huge = memory.allocate(MemoryKind::device, 300ull << 20, "a block of its own");
  EXPECT_NE(huge.block, a.block);
  memory.free(huge);
}

TEST_F(VulkanTest, DroppedTensorsAreFreedOnceTheGpuIsDone) {
  auto& memory = gpu_->context().memory;
  gpu_->finish();
  const auto before = memory.bytes_in_use(MemoryKind::device);
  {
    Tensor a = gpu_->empty({1000});
    Tensor b = gpu_->empty({1000});
    gpu_->upload(random_values(1000, 7), a);
    gpu_->add(a, a, b);  // recorded, not yet run, when a and b are dropped
  }
  EXPECT_GT(memory.bytes_in_use(MemoryKind::device), before);
  gpu_->finish();
  EXPECT_EQ(memory.bytes_in_use(MemoryKind::device), before);
}

}  // namespace
}  // namespace moeflux::test
