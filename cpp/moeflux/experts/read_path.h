// One expert-record read and the interface of the two read paths (io_uring + O_DIRECT, buffered
// pread). Offsets, lengths and buffers are 4 KiB multiples, so a request suits O_DIRECT unchanged.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <span>

namespace moeflux::experts {

struct ReadRequest {
  std::size_t file = 0;        // index into the reader's files
  std::uint64_t offset = 0;    // of the record in its file
  std::uint64_t length = 0;    // bytes of the record
  std::byte* buffer = nullptr;
  int layer = 0;               // decoder layer and expert, for the fault injector and messages
  int expert = 0;

  // Outcome. A request with `error` already set on entry is skipped (an injected fault).
  std::uint64_t done = 0;      // bytes of the record read so far
  int error = 0;               // errno of a failed read, 0 when none
  bool eof = false;            // the file ended before the record did
  std::uint64_t pos = 0;       // record-relative position of the read in flight (io_uring)

  bool ok() const { return error == 0 && !eof && done == length; }
};

// Called once for each request of a read (by its index) when it has finished, ok or failed, on
// the reading thread while other reads may still be in flight: the caller can use a record as soon
// as it lands. Requests skipped on entry (an injected fault) are announced too.
using ReadDone = std::function<void(std::size_t index)>;

class ReadPath {
 public:
  virtual ~ReadPath() = default;
  // Reads every request, recording each outcome in it; returns only when none is in flight, so no
  // read can land in a buffer after the caller reuses it. Never throws while reads are in flight:
  // when on_done throws, it is not called again, every read is drained, then the first exception
  // is rethrown.
  virtual void read(std::span<ReadRequest> requests, const ReadDone& on_done) = 0;
};

// Calls on_done for a read path, keeping the first exception instead of letting it escape while
// reads are in flight; rethrow() once none is.
class ReadAnnouncer {
 public:
  explicit ReadAnnouncer(const ReadDone& on_done) : on_done_(on_done) {}
  void operator()(std::size_t index) noexcept {
    if (!on_done_ || failure_) return;
    try {
      on_done_(index);
    } catch (...) {
      failure_ = std::current_exception();
    }
  }
  void rethrow() const {
    if (failure_) std::rethrow_exception(failure_);
  }

 private:
  const ReadDone& on_done_;
  std::exception_ptr failure_;
};

}  // namespace moeflux::experts
