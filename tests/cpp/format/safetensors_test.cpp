// safetensors.h: single files and sharded checkpoints with an index, and every corruption the
// reader must refuse with a FormatError (never a crash): lengths, JSON, offsets, dtypes, duplicates.
#include "moeflux/format/safetensors.h"
#include "fixtures.h"

namespace moeflux::format {
namespace {

using testing::SourceTensor;
using testing::TempDir;

std::string raw_float_bytes(const TensorView& view) {
  return std::string(reinterpret_cast<const char*>(view.data), view.nbytes);
}

TEST(Safetensors, ReadsASingleFile) {
  TempDir dir;
  const std::vector<float> a = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};
  const std::vector<float> b = {-1.5f, 0.25f, 3.0f};
  testing::write_file(dir / "model.safetensors",
                      testing::safetensors_file({{"w.a", {2, 3}, a}, {"w.b", {3}, b, "BF16"}}));
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(dir.path());
  EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"w.a", "w.b"}));
  EXPECT_TRUE(ckpt.contains("w.a"));
  EXPECT_FALSE(ckpt.contains("__metadata__"));
  const TensorView va = ckpt.get("w.a");
  EXPECT_EQ(va.dtype, Dtype::f32);
  EXPECT_EQ(va.shape, (Shape{2, 3}));
  EXPECT_EQ(raw_float_bytes(va), testing::f32_bytes(a));
  const TensorView vb = ckpt.get("w.b");
  EXPECT_EQ(vb.dtype, Dtype::bf16);
  EXPECT_EQ(vb.nbytes, 6u);
  EXPECT_EQ(raw_float_bytes(vb), testing::bf16_bytes(b));
  EXPECT_EQ(ckpt.file_of("w.b"), dir / "model.safetensors");
  EXPECT_THROW_WITH(ckpt.get("w.c"), FormatError, "tensor w.c is not in the checkpoint");
}

TEST(Safetensors, ReadsShardsThroughTheIndex) {
  TempDir dir;
  testing::write_file(dir / "model-00001-of-00002.safetensors",
                      testing::safetensors_file({{"x", {2}, {1, 2}}}));
  testing::write_file(dir / "model-00002-of-00002.safetensors",
                      testing::safetensors_file({{"y", {1}, {3}}, {"z", {2}, {4, 5}}}));
  testing::write_file(dir / "stray.safetensors",
                      testing::safetensors_file({{"x", {1}, {9}}}));  // not indexed
  testing::write_file(dir / "model.safetensors.index.json",
                      R"({"metadata":{"total_size":20},"weight_map":{"x":"model-00001-of-00002.safetensors",
                          "y":"model-00002-of-00002.safetensors","z":"model-00002-of-00002.safetensors"}})");
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(dir.path());
  EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"x", "y", "z"}));
  EXPECT_EQ(ckpt.file_of("z"), dir / "model-00002-of-00002.safetensors");
  EXPECT_EQ(raw_float_bytes(ckpt.get("z")), testing::f32_bytes({4, 5}));
  EXPECT_EQ(raw_float_bytes(ckpt.get("x")), testing::f32_bytes({1, 2}));
}

TEST(Safetensors, ReadsUnindexedShardsInOrder) {
  TempDir dir;
  testing::write_file(dir / "b.safetensors", testing::safetensors_file({{"y", {1}, {3}}}));
  testing::write_file(dir / "a.safetensors", testing::safetensors_file({{"x", {1}, {1}}}));
  testing::write_file(dir / "notes.txt", "not a shard");
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(dir.path());
  EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(ckpt.file_of("y"), dir / "b.safetensors");
}

TEST(Safetensors, RefusesADuplicateTensorAcrossShards) {
  TempDir dir;
  testing::write_file(dir / "a.safetensors", testing::safetensors_file({{"x", {1}, {1}}}));
  testing::write_file(dir / "b.safetensors", testing::safetensors_file({{"x", {1}, {2}}}));
  EXPECT_THROW_WITH(SafetensorsCheckpoint::open(dir.path()), FormatError, "tensor x appears in both");
}

TEST(Safetensors, RefusesADirectoryWithoutWeights) {
  TempDir dir;
  testing::write_file(dir / "config.json", "{}");
  EXPECT_THROW_WITH(SafetensorsCheckpoint::open(dir.path()), FormatError, "holds no *.safetensors files");
  EXPECT_THROW_WITH(SafetensorsCheckpoint::open(dir / "absent"), IoError, "is not a directory");
}

TEST(Safetensors, RefusesAnIndexNamingAMissingShard) {
  TempDir dir;
  testing::write_file(dir / "model.safetensors.index.json", R"({"weight_map":{"x":"gone.safetensors"}})");
  EXPECT_THROW_WITH(SafetensorsCheckpoint::open(dir.path()), FormatError, "lists the shard gone.safetensors");
  testing::write_file(dir / "model.safetensors.index.json", R"({"weight_map":{"x":"../x.safetensors"}})");
  EXPECT_THROW_WITH(SafetensorsCheckpoint::open(dir.path()), FormatError, "outside the checkpoint");
  testing::write_file(dir / "model.safetensors.index.json", R"({"weight_map":)");
  EXPECT_THROW_WITH(SafetensorsCheckpoint::open(dir.path()), FormatError, "is not valid JSON");
  testing::write_file(dir / "a.safetensors", testing::safetensors_file({{"y", {1}, {1}}}));
  testing::write_file(dir / "model.safetensors.index.json", R"({"weight_map":{"x":"a.safetensors"}})");
  EXPECT_THROW_WITH(SafetensorsCheckpoint::open(dir.path()), FormatError, "places tensor x in a.safetensors");
}

// Writes one corrupt file and expects open() to refuse it naming the file and the problem.
void expect_corrupt(const std::string& bytes, const std::string& fragment) {
  TempDir dir;
  testing::write_file(dir / "model.safetensors", bytes);
  EXPECT_THROW_WITH(SafetensorsCheckpoint::open(dir.path()), FormatError, fragment);
  EXPECT_THROW_WITH(SafetensorsCheckpoint::open(dir.path()), FormatError, dir / "model.safetensors");
}

const std::string kGoodHeader = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
const std::string kEightBytes(8, '\1');

TEST(Safetensors, RefusesCorruptHeaders) {
  expect_corrupt("", "fewer than the 8-byte header length");
  expect_corrupt("abc", "fewer than the 8-byte header length");
  expect_corrupt(testing::safetensors_bytes(kGoodHeader, kEightBytes, 1000), "runs past the end of the file");
  expect_corrupt(testing::safetensors_bytes(kGoodHeader, kEightBytes, -2 + 0x7fffffffffffffff),
                 "runs past the end of the file");
  expect_corrupt(testing::safetensors_bytes(R"({"x":{"dtype":"F32",)", kEightBytes), "not valid JSON");
  expect_corrupt(testing::safetensors_bytes("[1, 2]", ""), "not a JSON object");
  expect_corrupt(testing::safetensors_bytes(R"({"x":[1]})", ""), "header entry of tensor x is not an object");
}

TEST(Safetensors, RefusesCorruptTensorEntries) {
  expect_corrupt(
      testing::safetensors_bytes(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", kEightBytes),
      "data_offsets [0, 16] of tensor x run past the end of the data (8 bytes)");
  expect_corrupt(
      testing::safetensors_bytes(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", kEightBytes),
      "data_offsets [8, 0]");
  expect_corrupt(
      testing::safetensors_bytes(R"({"x":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}})", kEightBytes),
      "unknown dtype \"Q7\"");
  expect_corrupt(
      testing::safetensors_bytes(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", kEightBytes),
      "has 8 bytes of data, not 12");
  expect_corrupt(
      testing::safetensors_bytes(R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", kEightBytes),
      "invalid dimension -2");
  expect_corrupt(
      testing::safetensors_bytes(
          R"({"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", kEightBytes),
      "not a representable count");
  expect_corrupt(testing::safetensors_bytes(R"({"x":{"dtype":"F32","shape":[2]}})", kEightBytes),
                 "no valid \"data_offsets\" pair");
  expect_corrupt(testing::safetensors_bytes(R"({"x":{"shape":[2],"data_offsets":[0,8]}})", kEightBytes),
                 "no \"dtype\" string");
}

TEST(Safetensors, ListsTypesItCannotStoreButRefusesToReadThem) {
  TempDir dir;
  testing::write_file(dir / "model.safetensors",
                      testing::safetensors_file({{"ids", {2}, {0, 0}, "I64"}, {"w", {1}, {1}}}));
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(dir.path());
  EXPECT_TRUE(ckpt.contains("ids"));
  EXPECT_THROW_WITH(ckpt.get("ids"), Unsupported,
                    "tensor ids in " + (dir / "model.safetensors") + " has dtype I64");
  EXPECT_EQ(ckpt.get("w").nbytes, 4u);
}

}  // namespace
}  // namespace moeflux::format
