// Recorder: the only code that touches command buffers. Commands go into one open batch, submitted
// at sync points with a timeline-semaphore signal; download() is the only host wait. Barriers come
// from what each command reads and writes: one global memory barrier before a command that touches
// a range written, or writes a range read, since the last barrier.
#pragma once

#include <vulkan/vulkan.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "moeflux/backend/cpu/thread_pool.h"
#include "moeflux/backend/vulkan/device.h"
#include "moeflux/backend/vulkan/memory.h"
#include "moeflux/backend/vulkan/pipelines.h"
#include "moeflux/backend/vulkan/profiler.h"

namespace moeflux::backend::vk {

// A bound range of a block's buffer: offset aligned for storage bindings, range <= the limit.
struct Binding {
  const Block* block = nullptr;
  VkDeviceSize offset = 0;
  VkDeviceSize range = 0;
};

struct Groups {
  std::uint32_t x = 1, y = 1, z = 1;
};

class Recorder {
 public:
  Recorder(Device& device, Memory& memory, bool profile = false);
  ~Recorder();  // waits for the device
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  // Records pipeline over `groups` with bindings 0.. = reads, then writes (a write may also be
  // read). Checks binding count, parameter size, group counts and every binding's range.
  void dispatch(const Pipeline& pipeline, std::initializer_list<Binding> reads,
                std::initializer_list<Binding> writes, std::span<const std::byte> params, Groups groups);
  template <typename Params>
  void dispatch(const Pipeline& pipeline, std::initializer_list<Binding> reads,
                std::initializer_list<Binding> writes, const Params& params, Groups groups) {
    dispatch(pipeline, reads, writes, std::as_bytes(std::span(&params, 1)), groups);
  }

  // Host bytes in staging memory that shaders may read: they stay until the host's next sync
  // point (download, finish) has seen every dispatch recorded before it complete, however many
  // batches are submitted in between.
  Binding stage(std::span<const std::byte> bytes);
  // Copies host bytes into dst (same size, multiple of 4) through staging, in stream order.
  void upload(std::span<const std::byte> src, const Binding& dst);
  // The same on the transfer queue (the compute queue's own where the device has no other): the
  // copy waits for the compute work recorded before it (which may still read dst), and compute
  // work recorded after it waits for the copy. flush_transfers() starts it without waiting for
  // the next compute submit.
  void upload_transfer(std::span<const std::byte> src, const Binding& dst);
  void flush_transfers();
  // Copies src to dst on the device (same size), in stream order.
  void copy(const Binding& src, const Binding& dst);
  // Copies device bytes back to the host: submits, waits, copies. The only host wait.
  void download(const Binding& src, std::span<std::byte> dst);
  // The same for several ranges, with one wait (while their bytes fit one piece of staging).
  void download(std::span<const Binding> srcs, std::span<const std::span<std::byte>> dsts);

  // Ranges the next dispatch reads by device address (expert weights), which its bindings do not
  // show: they join the read set, so a copy that wrote them gets its barrier.
  void note_reads(std::span<const Binding> reads);
  void flush();   // submits the open batch, if any, without waiting
  void finish();  // submits and waits for all work; rethrows validation errors

  // The timeline value after which no recorded work can use memory freed now: the open batch's,
  // else the last submitted one's.
  std::uint64_t pending_value() const { return open_ ? submitted_ + 1 : submitted_; }
  std::uint64_t max_range() const { return device_.limits().max_storage_range; }
  std::uint64_t dispatches() const { return dispatches_; }
  std::uint64_t barriers() const { return barriers_; }
  std::uint64_t submits() const { return submitted_; }
  // Since the last reset_stats(): "vk_dispatches", "vk_barriers", "vk_submits", host seconds spent
  // recording ("vk_record_seconds") and waiting for the GPU ("vk_wait_seconds"), and with profiling
  // on, GPU seconds per shader ("gpu_seconds.<shader>", "gpu_seconds.copy").
  std::map<std::string, double> stats() const;
  void reset_stats();

 private:
  struct Batch;
  struct Span {
    std::uint32_t block;
    VkDeviceSize begin, end;
  };

  Batch& open();
  void retire_staged(Batch& batch);  // staged_ freed when `batch` completes
  struct TransferBatch;
  TransferBatch& open_transfer();
  void reclaim_transfers(bool wait_all);
  // The read and write sets of the next command (`copy`: a transfer, else a dispatch), with a
  // barrier first where it touches what an earlier command since the last barrier wrote or read.
  void track(std::span<const Binding> reads, std::span<const Binding> writes, bool copy);
  VkDescriptorSet descriptor_set(Batch& batch, const Pipeline& pipeline);
  Allocation staging(Batch& batch, VkDeviceSize size);
  std::uint64_t completed() const;  // the timeline's value: batches up to it have completed
  // Blocks until `value`; the batches before it are reclaimed while the last one still runs.
  void wait(std::uint64_t value);
  void reclaim(std::uint64_t completed);
  void check_binding(const Binding& b) const;

  Device& device_;
  Memory& memory_;
  VkCommandPool pool_ = VK_NULL_HANDLE;
  VkSemaphore timeline_ = VK_NULL_HANDLE;
  std::uint64_t submitted_ = 0;
  std::uint32_t flush_at_;  // dispatches in the open batch that submit it (recorder.cpp)
  std::unique_ptr<Batch> open_;
  std::deque<std::unique_ptr<Batch>> in_flight_;
  std::vector<std::unique_ptr<Batch>> idle_;
  std::vector<Allocation> staged_;  // stage()'s allocations, until the next sync point
  VkDeviceSize staged_bytes_ = 0;
  // The transfer lane: its own pool, timeline and batches; compute submits wait for its value.
  VkCommandPool transfer_pool_ = VK_NULL_HANDLE;
  VkSemaphore transfer_timeline_ = VK_NULL_HANDLE;
  std::uint64_t transfers_submitted_ = 0, compute_waits_for_ = 0;
  std::unique_ptr<TransferBatch> transfer_open_;
  std::deque<std::unique_ptr<TransferBatch>> transfers_in_flight_;
  std::vector<std::unique_ptr<TransferBatch>> transfers_idle_;
  std::vector<Span> reads_since_barrier_, writes_since_barrier_;
  bool copies_since_barrier_ = false;  // a copy was recorded after the last barrier
  std::uint64_t dispatches_ = 0, barriers_ = 0;
  Profiler profiler_;
  // Copies host bytes into staging with several threads (one core does not reach memory bandwidth).
  void copy_to_staging(std::byte* dst, const std::byte* src, std::size_t n);
  cpu::ThreadPool copy_pool_;
  struct Counters {
    std::uint64_t dispatches = 0, barriers = 0, submits = 0;
    double record_seconds = 0.0, wait_seconds = 0.0;
  } base_;  // the counters at the last reset_stats
  double record_seconds_ = 0.0, wait_seconds_ = 0.0;
};

}  // namespace moeflux::backend::vk
