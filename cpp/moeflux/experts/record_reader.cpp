#include "moeflux/experts/record_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

#include "moeflux/experts/pread_reader.h"
#include "moeflux/experts/uring_reader.h"
#include "moeflux/util/error.h"

namespace moeflux::experts {

RecordReader::RecordReader(std::vector<ExpertFile> files, IoMode mode, unsigned queue_depth,
                           std::function<int(int, int)> fault_injector)
    : files_(std::move(files)), mode_(mode), queue_depth_(queue_depth), fault_injector_(std::move(fault_injector)) {
  try {
    if (mode_ == IoMode::direct && open_files(true)) {
      int error = 0;
      path_ = UringReader::create(fds_, queue_depth_, &error);
      if (path_ == nullptr) use_buffered();  // io_uring disabled or absent (error is ENOSYS, EPERM, ...)
    } else {
      use_buffered();
    }
  } catch (...) {
    close_files();
    throw;
  }
}

RecordReader::~RecordReader() {
  path_.reset();  // the ring goes before the files it reads
  close_files();
}

bool RecordReader::open_files(bool direct) {
  close_files();
  const int flags = O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0);
  for (const ExpertFile& f : files_) {
    const int fd = ::open(f.path.c_str(), flags);
    if (fd < 0 && direct && errno == EINVAL) {
      close_files();
      return false;
    }
    MF_CHECK(fd >= 0, IoError, "[open_expert_store] cannot open ", f.path, " (experts of layer ", f.layer,
             "): ", std::system_category().message(errno), "; check that the model directory is readable");
    fds_.push_back(fd);
    struct stat st {};
    MF_CHECK(::fstat(fd, &st) == 0, IoError, "[open_expert_store] cannot stat ", f.path, ": ",
             std::system_category().message(errno));
    MF_CHECK(static_cast<std::uint64_t>(st.st_size) == f.size, FormatError, "[open_expert_store] ", f.path,
             " (experts of layer ", f.layer, ") has ", st.st_size, " bytes but the manifest expects ", f.size,
             "; the file changed after the model was opened; do not write to a model directory in use, "
             "or copy it again");
  }
  return true;
}

void RecordReader::close_files() {
  for (int fd : fds_) ::close(fd);
  fds_.clear();
}

void RecordReader::use_buffered() {
  path_.reset();
  open_files(false);
  mode_ = IoMode::buffered;
  path_ = std::make_unique<PreadReader>(fds_);
}

void RecordReader::inject(std::span<ReadRequest> requests) const {
  if (!fault_injector_) return;
  for (ReadRequest& r : requests) {
    const int error = fault_injector_(r.layer, r.expert);
    if (error != 0) r.error = error;
  }
}

void RecordReader::read(std::span<ReadRequest> requests, const ReadDone& on_done) {
  if (path_ == nullptr) use_buffered();  // an earlier fallback could not reopen the files
  inject(requests);
  if (mode_ != IoMode::direct || direct_confirmed_) {
    path_->read(requests, on_done);
    return;
  }
  // Until a direct read has succeeded, EINVAL may mean the file system refuses O_DIRECT and the
  // read is retried buffered: such reads are announced only once their outcome is final.
  ReadDone announce_final;
  if (on_done) {
    announce_final = [&](std::size_t index) {
      if (requests[index].error != EINVAL) on_done(index);
    };
  }
  path_->read(requests, announce_final);
  const bool any_ok = std::any_of(requests.begin(), requests.end(), [](const ReadRequest& r) { return r.ok(); });
  std::vector<std::size_t> refused;
  for (std::size_t i = 0; i < requests.size(); ++i)
    if (requests[i].error == EINVAL) refused.push_back(i);
  if (any_ok || refused.empty()) {
    direct_confirmed_ = any_ok;
    ReadAnnouncer announce(on_done);  // their EINVAL is final: a real error
    for (const std::size_t index : refused) announce(index);
    announce.rethrow();
    return;
  }
  // The file system accepted O_DIRECT at open but refuses the reads: read buffered from now on.
  use_buffered();
  std::vector<ReadRequest> retry;
  for (const std::size_t index : refused) {
    retry.push_back(requests[index]);
    retry.back().error = 0;
  }
  inject(retry);
  ReadDone announce_retry;
  if (on_done) {
    announce_retry = [&](std::size_t j) {
      requests[refused[j]] = retry[j];
      on_done(refused[j]);
    };
  }
  // The retried requests' outcomes go back into the caller's, whether the read throws or not.
  const auto copy_back = [&] {
    for (std::size_t j = 0; j < retry.size(); ++j) requests[refused[j]] = retry[j];
  };
  try {
    path_->read(retry, announce_retry);
  } catch (...) {
    copy_back();
    throw;
  }
  copy_back();
}

std::int64_t RecordReader::current_size(std::size_t index) const {
  struct stat st {};
  if (index >= fds_.size() || ::fstat(fds_[index], &st) != 0) return -1;
  return static_cast<std::int64_t>(st.st_size);
}

}  // namespace moeflux::experts
