// The expert files of one store and the read path over them: io_uring on O_DIRECT files, or
// buffered pread when chosen, when io_uring is unavailable, or when the file system refuses
// O_DIRECT (EINVAL at open, or at the first read before any direct read has succeeded).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "moeflux/experts/expert_store.h"
#include "moeflux/experts/read_path.h"

namespace moeflux::experts {

struct ExpertFile {
  std::string path;
  std::uint64_t size = 0;  // as the manifest says
  int layer = 0;           // decoder layer, for messages
};

class RecordReader {
 public:
  // Opens every file and checks its size; throws IoError (cannot open) or FormatError (wrong size).
  RecordReader(std::vector<ExpertFile> files, IoMode mode, unsigned queue_depth,
               std::function<int(int, int)> fault_injector);
  ~RecordReader();
  RecordReader(const RecordReader&) = delete;
  RecordReader& operator=(const RecordReader&) = delete;

  // Asks the fault injector about every request, then reads them all (ReadPath::read, on_done
  // included). A read that may yet be retried buffered is announced after its retry.
  void read(std::span<ReadRequest> requests, const ReadDone& on_done = {});

  IoMode mode() const { return mode_; }
  const ExpertFile& file(std::size_t index) const { return files_[index]; }
  // The file's size now, or -1 when it cannot be read: for messages about files that changed.
  std::int64_t current_size(std::size_t index) const;

 private:
  bool open_files(bool direct);  // false when O_DIRECT is refused
  void close_files();
  void use_buffered();
  void inject(std::span<ReadRequest> requests) const;

  std::vector<ExpertFile> files_;
  std::vector<int> fds_;
  IoMode mode_;
  unsigned queue_depth_;
  std::function<int(int, int)> fault_injector_;
  std::unique_ptr<ReadPath> path_;
  bool direct_confirmed_ = false;  // a direct read has succeeded: EINVAL is no longer a refusal
};

}  // namespace moeflux::experts
