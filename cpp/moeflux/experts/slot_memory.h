// Host memory for expert slots: one anonymous private mapping, page-aligned (so every slot of a
// 4 KiB-multiple size is an O_DIRECT target), whose untouched pages cost no resident memory.
#pragma once

#include <cstddef>
#include <cstdint>

namespace moeflux::experts {

class SlotMemory {
 public:
  SlotMemory() = default;
  // Reserves n_slots * slot_bytes; throws BudgetError when the system refuses the mapping.
  SlotMemory(std::uint64_t n_slots, std::uint64_t slot_bytes);
  ~SlotMemory();
  SlotMemory(SlotMemory&& other) noexcept;
  SlotMemory& operator=(SlotMemory&& other) noexcept;
  SlotMemory(const SlotMemory&) = delete;
  SlotMemory& operator=(const SlotMemory&) = delete;

  std::byte* slot(std::uint64_t index) const { return base_ + index * slot_bytes_; }
  std::uint64_t bytes() const { return bytes_; }

 private:
  void release();
  std::byte* base_ = nullptr;
  std::uint64_t slot_bytes_ = 0;
  std::uint64_t bytes_ = 0;
};

}  // namespace moeflux::experts
