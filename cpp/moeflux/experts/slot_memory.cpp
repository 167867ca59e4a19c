#include "moeflux/experts/slot_memory.h"

#include <sys/mman.h>

#include <cerrno>
#include <system_error>
#include <utility>

#include "moeflux/util/error.h"

namespace moeflux::experts {

SlotMemory::SlotMemory(std::uint64_t n_slots, std::uint64_t slot_bytes) : slot_bytes_(slot_bytes) {
  bytes_ = n_slots * slot_bytes;
  if (bytes_ == 0) return;
  void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    bytes_ = 0;
    throw BudgetError(util::concat("[open_expert_store] cannot reserve ", n_slots * slot_bytes,
                                   " bytes of host memory for ", n_slots, " expert slots (",
                                   std::system_category().message(err), "); lower cache_bytes"));
  }
  base_ = static_cast<std::byte*>(p);
}

SlotMemory::~SlotMemory() { release(); }

SlotMemory::SlotMemory(SlotMemory&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)),
      slot_bytes_(std::exchange(other.slot_bytes_, 0)),
      bytes_(std::exchange(other.bytes_, 0)) {}

SlotMemory& SlotMemory::operator=(SlotMemory&& other) noexcept {
  if (this != &other) {
    release();
    base_ = std::exchange(other.base_, nullptr);
    slot_bytes_ = std::exchange(other.slot_bytes_, 0);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void SlotMemory::release() {
  if (base_ != nullptr) ::munmap(base_, bytes_);
  base_ = nullptr;
  bytes_ = 0;
}

}  // namespace moeflux::experts
