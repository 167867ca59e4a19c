#include "moeflux/experts/pread_reader.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace moeflux::experts {

namespace {
constexpr std::uint64_t kMaxChunk = std::uint64_t{1} << 30;  // Linux returns at most ~2 GiB per call
}

void PreadReader::read(std::span<ReadRequest> requests, const ReadDone& on_done) {
  ReadAnnouncer announce(on_done);
  for (std::size_t i = 0; i < requests.size(); ++i) {
    ReadRequest& r = requests[i];
    if (r.error != 0) {
      announce(i);  // skipped: finished already
      continue;
    }
    r.done = 0;
    r.eof = false;
    while (r.done < r.length) {
      const std::uint64_t length = std::min(r.length - r.done, kMaxChunk);
      const ssize_t n = ::pread(fds_[r.file], r.buffer + r.done, length, static_cast<off_t>(r.offset + r.done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        r.error = errno;
        break;
      }
      if (n == 0) {
        r.eof = true;
        break;
      }
      r.done += static_cast<std::uint64_t>(n);
    }
    announce(i);
  }
  announce.rethrow();
}

}  // namespace moeflux::experts
