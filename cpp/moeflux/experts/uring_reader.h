// The io_uring read path: every request of a call in flight at once (up to the queue depth), on
// files opened with O_DIRECT; short reads are resubmitted from the last 4 KiB boundary reached.
#pragma once

#include <memory>
#include <vector>

#include "moeflux/experts/read_path.h"

struct io_uring;

namespace moeflux::experts {

class UringReader final : public ReadPath {
 public:
  // nullptr, with the errno in *error, when io_uring cannot be set up (ENOSYS, EPERM in containers).
  static std::unique_ptr<UringReader> create(std::vector<int> fds, unsigned queue_depth, int* error);
  ~UringReader() override;
  UringReader(const UringReader&) = delete;
  UringReader& operator=(const UringReader&) = delete;

  void read(std::span<ReadRequest> requests, const ReadDone& on_done) override;

 private:
  UringReader(std::vector<int> fds, unsigned queue_depth, std::unique_ptr<io_uring> ring);
  // Records a completion; a request that has finished (ok or failed) goes to finished_.
  void complete(std::span<ReadRequest> requests, std::size_t index, int result);
  void fail_and_drain(std::span<ReadRequest> requests, int error, unsigned in_flight, ReadAnnouncer& announce);

  std::vector<int> fds_;
  unsigned queue_depth_ = 0;
  std::unique_ptr<io_uring> ring_;
  int broken_ = 0;  // errno of a ring failure that could not be recovered; fails every later read
  // Requests waiting for submission: a circular queue that never allocates while reads are in flight.
  std::vector<std::size_t> queue_;
  std::size_t queue_head_ = 0, queue_count_ = 0;
  std::vector<std::size_t> finished_;  // requests finished by the completions just reaped
};

}  // namespace moeflux::experts
