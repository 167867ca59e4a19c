// The buffered read path: plain pread, one request after another, for file systems without
// O_DIRECT and machines without io_uring.
#pragma once

#include <vector>

#include "moeflux/experts/read_path.h"

namespace moeflux::experts {

class PreadReader final : public ReadPath {
 public:
  explicit PreadReader(std::vector<int> fds) : fds_(std::move(fds)) {}
  void read(std::span<ReadRequest> requests, const ReadDone& on_done) override;

 private:
  std::vector<int> fds_;
};

}  // namespace moeflux::experts
