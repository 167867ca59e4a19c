// Both read paths' completion callback: every request announced exactly once as it finishes, the
// failed ones too, and a throwing callback rethrown only after every read has finished.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/fixtures.h"
#include "moeflux/experts/pread_reader.h"
#include "moeflux/experts/uring_reader.h"

namespace moeflux::experts {
namespace {

constexpr std::uint64_t kRecord = 8192;
constexpr int kRecords = 8;

std::byte file_byte(std::uint64_t offset) { return static_cast<std::byte>((offset * 131u + 7u) % 251u); }

enum class Path { pread, uring };

class ReadPathCallback : public ::testing::TestWithParam<Path> {
 protected:
  void SetUp() override {
    path_ = dir_.path() + "/records.bin";
    std::string bytes(kRecords * kRecord, '\0');
    for (std::uint64_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(file_byte(i));
    std::ofstream(path_, std::ios::binary) << bytes;
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd_, 0);
    buffer_ = static_cast<std::byte*>(std::aligned_alloc(4096, (kRecords + 1) * kRecord));
    ASSERT_NE(buffer_, nullptr);
    if (GetParam() == Path::pread) {
      reader_ = std::make_unique<PreadReader>(std::vector<int>{fd_});
    } else {
      int error = 0;
      reader_ = UringReader::create({fd_}, /*queue_depth=*/2, &error);  // fewer than the requests
      ASSERT_NE(reader_, nullptr) << "io_uring cannot be set up here (errno " << error << ")";
    }
  }
  void TearDown() override {
    reader_.reset();
    if (fd_ >= 0) ::close(fd_);
    std::free(buffer_);
  }
  // Record r of the file into buffer slot `slot`; a record past the end of the file reads short.
  ReadRequest request(int record, int slot) const {
    ReadRequest r;
    r.offset = static_cast<std::uint64_t>(record) * kRecord;
    r.length = kRecord;
    r.buffer = buffer_ + static_cast<std::uint64_t>(slot) * kRecord;
    r.expert = record;
    return r;
  }
  bool holds_record(const ReadRequest& r) const {
    for (std::uint64_t i = 0; i < r.length; ++i)
      if (r.buffer[i] != file_byte(r.offset + i)) return false;
    return true;
  }

  moeflux::testing::TempDir dir_;
  std::string path_;
  int fd_ = -1;
  std::byte* buffer_ = nullptr;
  std::unique_ptr<ReadPath> reader_;
};

TEST_P(ReadPathCallback, EveryRequestIsAnnouncedOnceWhenItHasFinished) {
  std::vector<ReadRequest> requests;
  for (int i = 0; i < 6; ++i) requests.push_back(request(i, i));
  requests[2].error = EIO;                  // skipped on entry, as the fault injector does
  requests.push_back(request(kRecords, 6)); // past the end of the file: fails with eof
  std::vector<int> announced(requests.size(), 0);
  reader_->read(requests, [&](std::size_t index) {
    ASSERT_LT(index, requests.size());
    ++announced[index];
    const ReadRequest& r = requests[index];
    // Finished when announced: ok with every byte in place, or failed.
    if (r.ok()) EXPECT_TRUE(holds_record(r)) << "record " << r.expert;
    else EXPECT_TRUE(r.error != 0 || r.eof) << "record " << r.expert << " announced unfinished";
  });
  for (std::size_t i = 0; i < requests.size(); ++i) EXPECT_EQ(announced[i], 1) << "request " << i;
  EXPECT_EQ(requests[2].error, EIO);
  EXPECT_TRUE(requests[6].eof);
  for (const int i : {0, 1, 3, 4, 5}) EXPECT_TRUE(requests[static_cast<std::size_t>(i)].ok()) << i;
}

TEST_P(ReadPathCallback, NoCallbackReadsAsBefore) {
  std::vector<ReadRequest> requests{request(3, 0), request(7, 1)};
  reader_->read(requests, {});
  for (const ReadRequest& r : requests) EXPECT_TRUE(r.ok() && holds_record(r));
}

TEST_P(ReadPathCallback, ThrowingCallbackIsRethrownAfterEveryReadFinished) {
  std::vector<ReadRequest> requests;
  for (int i = 0; i < kRecords; ++i) requests.push_back(request(i, i));
  int calls = 0;
  try {
    reader_->read(requests, [&](std::size_t) {
      if (++calls == 2) throw std::runtime_error("upload failed");
    });
    FAIL() << "expected the callback's exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "upload failed");
  }
  EXPECT_EQ(calls, 2);  // never called again after it threw
  for (const ReadRequest& r : requests) EXPECT_TRUE(r.ok() && holds_record(r)) << "record " << r.expert;
  // The reader stays usable.
  std::vector<ReadRequest> again{request(5, 0)};
  int announced = 0;
  reader_->read(again, [&](std::size_t) { ++announced; });
  EXPECT_EQ(announced, 1);
  EXPECT_TRUE(again[0].ok() && holds_record(again[0]));
}

std::string path_name(const ::testing::TestParamInfo<Path>& param) {
  return param.param == Path::pread ? "pread" : "uring";
}

INSTANTIATE_TEST_SUITE_P(BothPaths, ReadPathCallback, ::testing::Values(Path::pread, Path::uring), path_name);

}  // namespace
}  // namespace moeflux::experts
