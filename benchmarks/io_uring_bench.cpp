// Raw io_uring read throughput: random block-aligned O_DIRECT reads of one size from one file, at a
// fixed queue depth, for a given time; the baseline the expert store's miss throughput is held to.
// Usage: io_uring_bench FILE BLOCK_BYTES QUEUE_DEPTH SECONDS [steady|batch]
//   steady: every completion is replaced at once; batch: QUEUE_DEPTH reads, wait for all, repeat
//   (the pattern of one layer's misses). Prints one JSON line.
#include <fcntl.h>
#include <liburing.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

[[noreturn]] void fail(const std::string& what, int error) {
  std::fprintf(stderr, "io_uring_bench: %s: %s\n", what.c_str(), std::strerror(error));
  std::exit(1);
}

std::uint64_t parse(const char* text, const char* name) {
  char* end = nullptr;
  const unsigned long long value = std::strtoull(text, &end, 10);
  if (end == text || *end != '\0' || value == 0) {
    std::fprintf(stderr, "io_uring_bench: %s must be a positive integer, not '%s'\n", name, text);
    std::exit(2);
  }
  return value;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5 || argc > 6) {
    std::fprintf(stderr, "usage: io_uring_bench FILE BLOCK_BYTES QUEUE_DEPTH SECONDS [steady|batch]\n");
    return 2;
  }
  const std::string path = argv[1];
  const std::uint64_t block = parse(argv[2], "BLOCK_BYTES");
  const auto depth = static_cast<unsigned>(parse(argv[3], "QUEUE_DEPTH"));
  const auto seconds = static_cast<double>(parse(argv[4], "SECONDS"));
  const std::string mode = argc == 6 ? argv[5] : "steady";
  if (block % 4096 != 0) fail("BLOCK_BYTES must be a multiple of 4096 (O_DIRECT)", EINVAL);
  if (mode != "steady" && mode != "batch") fail("mode must be steady or batch", EINVAL);
  if (depth > 4096) fail("QUEUE_DEPTH must be at most 4096", EINVAL);

  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (fd < 0) fail("open " + path, errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail("stat " + path, errno);
  const std::uint64_t blocks = static_cast<std::uint64_t>(st.st_size) / block;
  if (blocks == 0) fail(path + " is smaller than one block", EINVAL);

  void* memory = ::mmap(nullptr, block * depth, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) fail("mmap", errno);
  auto* buffers = static_cast<std::byte*>(memory);
  io_uring ring{};
  if (const int ret = io_uring_queue_init(depth, &ring, 0); ret < 0) fail("io_uring_queue_init", -ret);

  std::mt19937_64 rng(42);
  std::uniform_int_distribution<std::uint64_t> pick(0, blocks - 1);
  const auto submit = [&](std::uint64_t slot) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    io_uring_prep_read(sqe, fd, buffers + slot * block, static_cast<unsigned>(block), pick(rng) * block);
    io_uring_sqe_set_data64(sqe, slot);
  };

  std::uint64_t reads = 0, bytes = 0, in_flight = 0;
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::duration<double>(seconds);
  bool running = true;
  std::vector<std::uint64_t> done_slots(depth);
  for (std::uint64_t slot = 0; slot < depth; ++slot) submit(slot);
  in_flight = depth;
  while (in_flight > 0) {
    const int ret = io_uring_submit_and_wait(&ring, 1);
    if (ret < 0 && ret != -EINTR) fail("io_uring_submit_and_wait", -ret);
    unsigned head = 0, seen = 0;
    io_uring_cqe* cqe = nullptr;
    io_uring_for_each_cqe(&ring, head, cqe) {
      if (cqe->res < 0) fail("read", -cqe->res);
      if (static_cast<std::uint64_t>(cqe->res) != block) fail("short read", EIO);
      done_slots[seen++] = io_uring_cqe_get_data64(cqe);
      bytes += block;
      ++reads;
    }
    io_uring_cq_advance(&ring, seen);
    in_flight -= seen;
    running = running && std::chrono::steady_clock::now() < deadline;
    if (!running) continue;
    if (mode == "steady") {
      for (unsigned i = 0; i < seen; ++i) submit(done_slots[i]);
      in_flight += seen;
    } else if (in_flight == 0) {
      for (std::uint64_t slot = 0; slot < depth; ++slot) submit(slot);
      in_flight = depth;
    }
  }
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "{\"file\": \"%s\", \"file_bytes\": %lld, \"block_bytes\": %llu, \"queue_depth\": %u, \"mode\": \"%s\", "
      "\"seconds\": %.3f, \"reads\": %llu, \"bytes\": %llu, \"mb_per_s\": %.1f, \"iops\": %.1f}\n",
      path.c_str(), static_cast<long long>(st.st_size), static_cast<unsigned long long>(block), depth, mode.c_str(),
      elapsed, static_cast<unsigned long long>(reads), static_cast<unsigned long long>(bytes),
      static_cast<double>(bytes) / elapsed / 1e6, static_cast<double>(reads) / elapsed);
  io_uring_queue_exit(&ring);
  ::munmap(memory, block * depth);
  ::close(fd);
  return 0;
}
