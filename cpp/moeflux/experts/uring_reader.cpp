#include "moeflux/experts/uring_reader.h"

#include <liburing.h>

#include <algorithm>
#include <cerrno>

namespace moeflux::experts {

namespace {

constexpr std::uint64_t kDirectAlignment = 4096;             // O_DIRECT offsets, lengths and buffers
constexpr std::uint64_t kMaxChunk = std::uint64_t{1} << 30;  // an SQE's length is 32-bit

// Failures of io_uring_enter that leave the ring intact: retry (after waiting, if reads are out).
bool transient(int error) { return error == EINTR || error == EAGAIN || error == EBUSY; }

}  // namespace

std::unique_ptr<UringReader> UringReader::create(std::vector<int> fds, unsigned queue_depth, int* error) {
  auto ring = std::make_unique<io_uring>();
  const int ret = io_uring_queue_init(queue_depth, ring.get(), 0);
  if (ret < 0) {
    *error = -ret;
    return nullptr;
  }
  return std::unique_ptr<UringReader>(new UringReader(std::move(fds), queue_depth, std::move(ring)));
}

UringReader::UringReader(std::vector<int> fds, unsigned queue_depth, std::unique_ptr<io_uring> ring)
    : fds_(std::move(fds)), queue_depth_(queue_depth), ring_(std::move(ring)) {}

UringReader::~UringReader() {
  if (ring_) io_uring_queue_exit(ring_.get());
}

void UringReader::read(std::span<ReadRequest> requests, const ReadDone& on_done) {
  queue_.assign(requests.size(), 0);  // the only allocations; nothing is in flight yet
  finished_.clear();
  finished_.reserve(requests.size());
  queue_head_ = queue_count_ = 0;
  ReadAnnouncer announce(on_done);
  const auto push = [&](std::size_t index) {
    queue_[(queue_head_ + queue_count_++) % queue_.size()] = index;
  };
  for (std::size_t i = 0; i < requests.size(); ++i) {
    ReadRequest& r = requests[i];
    if (r.error == 0 && broken_ != 0) r.error = broken_;
    if (r.error != 0) {
      announce(i);  // skipped: finished already
      continue;
    }
    r.done = 0;
    r.eof = false;
    push(i);
  }

  unsigned in_flight = 0;
  // io_uring_enter itself failed: the reads left fail (fail_and_drain), then on_done's exception, if any.
  const auto fail = [&](int ret) {
    fail_and_drain(requests, -ret, in_flight, announce);
    announce.rethrow();
  };
  const auto prepare = [&] {  // SQEs for queued requests, up to the queue depth
    while (queue_count_ > 0 && in_flight < queue_depth_) {
      io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
      if (sqe == nullptr) break;  // cannot happen: in_flight never exceeds the ring's entries
      const std::size_t index = queue_[queue_head_];
      queue_head_ = (queue_head_ + 1) % queue_.size();
      --queue_count_;
      ReadRequest& r = requests[index];
      // Resume from the last aligned position: O_DIRECT refuses unaligned offsets.
      r.pos = r.done & ~(kDirectAlignment - 1);
      const std::uint64_t length = std::min(r.length - r.pos, kMaxChunk);
      io_uring_prep_read(sqe, fds_[r.file], r.buffer + r.pos, static_cast<unsigned>(length), r.offset + r.pos);
      io_uring_sqe_set_data64(sqe, index);
      ++in_flight;
    }
  };
  while (queue_count_ > 0 || in_flight > 0) {
    prepare();
    int ret = io_uring_submit_and_wait(ring_.get(), 1);
    if (ret < 0 && !transient(-ret)) return fail(ret);
    unsigned head = 0, seen = 0;
    io_uring_cqe* cqe = nullptr;
    io_uring_for_each_cqe(ring_.get(), head, cqe) {
      complete(requests, static_cast<std::size_t>(io_uring_cqe_get_data64(cqe)), cqe->res);
      ++seen;
    }
    io_uring_cq_advance(ring_.get(), seen);
    in_flight -= seen;
    // The freed queue depth goes to waiting requests before the callbacks run, so that the disk
    // stays busy while they work; the finished requests are announced either way.
    ret = 0;
    if (!finished_.empty() && queue_count_ > 0) {
      prepare();
      ret = io_uring_submit(ring_.get());
    }
    for (const std::size_t index : finished_) announce(index);
    finished_.clear();
    if (ret < 0 && !transient(-ret)) return fail(ret);
  }
  announce.rethrow();
}

void UringReader::complete(std::span<ReadRequest> requests, std::size_t index, int result) {
  ReadRequest& r = requests[index];
  if (result == -EAGAIN || result == -EINTR) {
    queue_[(queue_head_ + queue_count_++) % queue_.size()] = index;
    return;
  }
  if (result < 0) {
    r.error = -result;
  } else if (r.pos + static_cast<std::uint64_t>(result) <= r.done) {
    r.eof = true;  // nothing beyond what an earlier read returned: the file ends inside the record
  } else {
    r.done = r.pos + static_cast<std::uint64_t>(result);
    if (r.done < r.length) {
      queue_[(queue_head_ + queue_count_++) % queue_.size()] = index;
      return;
    }
  }
  finished_.push_back(index);  // within its reserved capacity: each request finishes once
}

// io_uring_enter itself failed (not one read): fail what is left, wait for the reads the kernel
// took, and start a fresh ring, so that no read can still land in a slot after we return.
void UringReader::fail_and_drain(std::span<ReadRequest> requests, int error, unsigned in_flight,
                                 ReadAnnouncer& announce) {
  finished_.clear();
  for (std::size_t i = 0; i < requests.size(); ++i) {
    ReadRequest& r = requests[i];
    if (r.error != 0 || r.eof || r.done >= r.length) continue;
    r.error = error;
    finished_.push_back(i);
  }
  unsigned taken = in_flight - io_uring_sq_ready(ring_.get());
  while (taken > 0) {
    io_uring_cqe* cqe = nullptr;
    const int ret = io_uring_wait_cqe(ring_.get(), &cqe);
    if (ret == -EINTR) continue;
    if (ret < 0) break;
    io_uring_cqe_seen(ring_.get(), cqe);
    --taken;
  }
  io_uring_queue_exit(ring_.get());  // what the kernel never took is dropped with the ring
  const int ret = io_uring_queue_init(queue_depth_, ring_.get(), 0);
  if (ret < 0) {
    ring_.reset();
    broken_ = -ret;
  }
  for (const std::size_t index : finished_) announce(index);  // nothing is in flight now
  finished_.clear();
}

}  // namespace moeflux::experts
