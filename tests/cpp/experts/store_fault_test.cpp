// Bad input and faults: injected read errors, files truncated or resized underneath the store,
// file systems that refuse O_DIRECT. Each raises a typed error, and the store stays usable.
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "experts/store_fixtures.h"
#include "moeflux/experts/expert_store.h"
#include "moeflux/util/error.h"

namespace moeflux::experts {
namespace {

class StoreFault : public testing::FaultyStoreTest {
 protected:
  void expect_exact(ExpertStore& store, int layer, std::vector<std::int32_t> experts) {
    for (const auto& r : store.fetch(layer, experts))
      EXPECT_TRUE(testing::record_matches(r, *model_->expert_layer(layer)));
  }
  std::string path(int layer) const { return model_->expert_file_path(*model_->expert_layer(layer)); }
};

TEST_P(StoreFault, InjectedReadErrorNamesFileLayerExpertAndOffset) {
  auto store = open();
  faults_[{2, 3}] = EIO;
  const std::vector<std::int32_t> experts{1, 3, 4};
  EXPECT_THROW_WITH(store->fetch(2, experts), IoError, "[fetch_experts] reading expert 3 of layer 2 from ",
                    path(2), "at offset 24576 (8192 bytes)", "Input/output error (errno 5)");
  faults_.clear();
  reads_ = 0;
  expect_exact(*store, 2, experts);  // 1 and 4 were read and stay cached; 3 was never cached
  EXPECT_EQ(reads_, 1);
  const StoreStats stats = store->stats();
  EXPECT_EQ(stats.misses, 4u);
  EXPECT_EQ(stats.bytes_read, 3u * 8192u);
}

TEST_P(StoreFault, EveryFailedReadIsCounted) {
  auto store = open(ExpertStore::min_cache_bytes(*model_, 2));
  faults_[{0, 0}] = EIO;
  faults_[{0, 5}] = ENOSPC;
  EXPECT_THROW_WITH(store->fetch(0, std::vector<std::int32_t>{0, 5}), IoError, "expert 0 of layer 0",
                    "(1 more reads of this fetch failed)");
  faults_.clear();
  expect_exact(*store, 0, {0, 5});
  expect_exact(*store, 3, {0, 5});
}

TEST_P(StoreFault, ThrowingInjectorLeavesNothingHalfCached) {
  StoreOptions options;
  options.io = GetParam();
  int calls = 0;
  options.fault_injector = [&](int, int expert) -> int {
    ++calls;
    if (expert == 2) throw std::runtime_error("injector failed");
    return 0;
  };
  ExpertStore store(model_, options);
  EXPECT_THROW(store.fetch(0, std::vector<std::int32_t>{1, 2}), std::runtime_error);
  EXPECT_EQ(store.stats().bytes_read, 0u);
  calls = 0;
  expect_exact(store, 0, {1});  // 1 was never read, so it is read now, not taken from its slot
  expect_exact(store, 0, {1});
  EXPECT_EQ(calls, 1);
}

TEST_P(StoreFault, TruncatedFileAfterOpenIsAFormatError) {
  auto store = open();
  const std::uint64_t stride = manifest_.expert_layers[0].stride;
  expect_exact(*store, 0, {0});
  ASSERT_EQ(::truncate(path(0).c_str(), static_cast<off_t>(3 * stride + 5000)), 0);  // inside expert 3
  EXPECT_THROW_WITH(store->fetch(0, std::vector<std::int32_t>{3}), FormatError, path(0),
                    "ended inside expert 3 of layer 0", "the file has 41864 bytes but the manifest expects 73728");
  EXPECT_THROW_WITH(store->fetch(0, std::vector<std::int32_t>{1, 4, 5}), FormatError, "expert 4 of layer 0",
                    "(1 more reads");
  expect_exact(*store, 0, {0, 1, 2});  // the records before the cut still read, and 1 was cached
  ASSERT_EQ(::truncate(path(0).c_str(), static_cast<off_t>(2 * stride)), 0);  // on a record boundary
  EXPECT_THROW_WITH(store->fetch(0, std::vector<std::int32_t>{2, 3}), FormatError, "expert 3 of layer 0");
  expect_exact(*store, 3, {0, 5});
}

TEST_P(StoreFault, ExpertFileOfTheWrongSizeIsRefused) {
  {
    std::ofstream grow(path(3), std::ios::binary | std::ios::app);
    grow << std::string(4096, 'x');
  }
  EXPECT_THROW_WITH(open(), FormatError, "[open_expert_store]", path(3), "has 77824 bytes",
                    "manifest expects 73728");
  EXPECT_THROW_WITH(format::PackedModel::open(dir_.path()), FormatError, path(3));
}

TEST_P(StoreFault, NothingLeaksThroughErrors) {
  const std::size_t fds = testing::open_fd_count();
  {
    auto store = open(ExpertStore::min_cache_bytes(*model_, 2));
    faults_[{3, 1}] = EIO;
    EXPECT_THROW(store->fetch(3, std::vector<std::int32_t>{0, 1}), IoError);
    faults_.clear();
    expect_exact(*store, 3, {0, 1});
    EXPECT_GT(testing::open_fd_count(), fds);
  }
  EXPECT_EQ(testing::open_fd_count(), fds);
  ::truncate(path(2).c_str(), 4096);
  EXPECT_THROW(open(), FormatError);
  EXPECT_EQ(testing::open_fd_count(), fds);
}

INSTANTIATE_TEST_SUITE_P(BothPaths, StoreFault, ::testing::Values(IoMode::direct, IoMode::buffered),
                         testing::io_mode_name);

// EINVAL from the first direct reads means the file system refuses O_DIRECT: read buffered instead.
TEST(StoreFallback, EinvalAtTheFirstReadSwitchesToBuffered) {
  testing::RefusingStore s(2);
  EXPECT_EQ(s.store->stats().io, "direct");
  const auto records = s.store->fetch(0, std::vector<std::int32_t>{2, 5});
  for (const auto& r : records) EXPECT_TRUE(testing::record_matches(r, *s.model->expert_layer(0)));
  EXPECT_EQ(s.store->stats().io, "buffered");
  EXPECT_EQ(s.calls, 4);  // asked again for the retried reads
}

TEST(StoreFallback, EinvalAfterADirectReadIsAnError) {
  testing::TempDir dir;
  testing::write_model(dir.path(), testing::default_layers());
  const auto model = format::PackedModel::open(dir.path());
  bool fail = false;
  StoreOptions options;
  options.fault_injector = [&](int, int) { return fail ? EINVAL : 0; };
  ExpertStore store(model, options);
  store.fetch(0, std::vector<std::int32_t>{0});
  fail = true;
  EXPECT_THROW_WITH(store.fetch(0, std::vector<std::int32_t>{1}), IoError, "Invalid argument");
  EXPECT_EQ(store.stats().io, "direct");
}

// Makes io_uring_setup fail with ENOSYS in this process, as some container runtimes do. For a
// forked child only: a seccomp filter cannot be removed.
bool refuse_io_uring() {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{static_cast<unsigned short>(std::size(filter)), filter};
  return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 && ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) == 0;
}

TEST(StoreFallback, NoIoUringReadsBuffered) {
  testing::TempDir dir;
  testing::write_model(dir.path(), testing::default_layers());
  const auto model = format::PackedModel::open(dir.path());
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        if (!refuse_io_uring()) std::exit(2);
        ExpertStore store(model, StoreOptions{});
        bool exact = store.stats().io == "buffered";
        for (const auto& r : store.fetch(2, std::vector<std::int32_t>{0, 4}))
          exact = exact && testing::record_matches(r, *model->expert_layer(2));
        std::fprintf(stderr, "io=%s\n", store.stats().io.c_str());
        std::exit(exact ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "io=buffered");
}

// tmpfs refused O_DIRECT before Linux 6.6; either way the store reads the model exactly.
TEST(StoreFallback, ModelOnDevShm) {
  if (!std::filesystem::is_directory("/dev/shm")) GTEST_SKIP() << "no /dev/shm";
  testing::TempDir dir("/dev/shm");
  testing::write_model(dir.path(), testing::default_layers());
  const auto model = format::PackedModel::open(dir.path());
  const int fd = ::open(model->expert_file_path(*model->expert_layer(0)).c_str(), O_RDONLY | O_DIRECT);
  const bool refuses = fd < 0 && errno == EINVAL;
  if (fd >= 0) ::close(fd);
  ExpertStore store(model, StoreOptions{});
  EXPECT_EQ(store.stats().io, refuses ? "buffered" : "direct");
  for (const auto& r : store.fetch(3, std::vector<std::int32_t>{0, 1, 2, 3, 4, 5}))
    EXPECT_TRUE(testing::record_matches(r, *model->expert_layer(3)));
}

}  // namespace
}  // namespace moeflux::experts
