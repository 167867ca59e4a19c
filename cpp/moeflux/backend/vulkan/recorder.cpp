// Batches, barriers from read/write sets, descriptor sets, staging and the timeline semaphore.
#include "moeflux/backend/vulkan/recorder.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "moeflux/backend/vulkan/check.h"
#include "moeflux/backend/vulkan/structs.h"
#include "moeflux/util/error.h"

namespace moeflux::backend::vk {
namespace {

constexpr std::uint32_t kSetsPerPool = 256;
constexpr std::uint32_t kMaxBindings = kMaxShaderBindings;  // per set; pools are sized for it
constexpr VkDeviceSize kCopyChunk = 16ull << 20;          // staging per upload/download piece
constexpr VkDeviceSize kFlushStaging = 64ull << 20;       // submit a batch holding this much staging
constexpr VkDeviceSize kMaxStagingInFlight = 256ull << 20;  // then wait until less is in flight
constexpr std::size_t kMaxTracked = 256;                  // spans tracked before a barrier anyway
constexpr std::uint64_t kWaitTimeoutNs = 600ull * 1000 * 1000 * 1000;
// A blocking wait returns some time after the GPU signals (the driver's wake-up), and the GPU then
// idles until the host records more: a host wait blocks only until the batch before the one it
// waits for, then polls for that one for at most this long.
constexpr double kPollSeconds = 0.005;
// Submit after this many dispatches, so the GPU starts while the host records the rest. After the
// GPU went idle (the host waited for all of it, as a decode step does for its logits) the first
// batch is submitted after kFlushDispatchesIdle and each next one after twice as many, up to
// kFlushDispatches: the GPU then never waits for the host to record a long batch.
constexpr std::uint32_t kFlushDispatches = 96;
constexpr std::uint32_t kFlushDispatchesIdle = 8;

constexpr std::size_t kCopyPiece = 512u << 10;  // bytes per thread of a staging copy, at least

int copy_threads() { return static_cast<int>(std::clamp(std::thread::hardware_concurrency() / 2, 1u, 8u)); }

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Begins `cmd` for one submission, allocating it from `pool` first if it has none yet.
void begin_commands(VkDevice device, VkCommandPool pool, VkCommandBuffer& cmd) {
  if (cmd == VK_NULL_HANDLE) {
    auto alloc = vk_struct<VkCommandBufferAllocateInfo>(VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO);
    alloc.commandPool = pool;
    alloc.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    alloc.commandBufferCount = 1;
    check(vkAllocateCommandBuffers(device, &alloc, &cmd), "vkAllocateCommandBuffers");
  }
  auto begin = vk_struct<VkCommandBufferBeginInfo>(VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO);
  begin.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  check(vkBeginCommandBuffer(cmd, &begin), "vkBeginCommandBuffer");
}

// Ends and submits `cmd` on `queue`, signalling `signal` to `value`; first waiting (at `stage`)
// for `wait` to reach `wait_value` when that is above 0.
void submit_commands(VkQueue queue, VkCommandBuffer cmd, VkSemaphore wait, const std::uint64_t& wait_value,
                     VkPipelineStageFlags stage, VkSemaphore signal, const std::uint64_t& value) {
  check(vkEndCommandBuffer(cmd), "vkEndCommandBuffer");
  auto timeline = vk_struct<VkTimelineSemaphoreSubmitInfo>(VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO);
  timeline.signalSemaphoreValueCount = 1;
  timeline.pSignalSemaphoreValues = &value;
  auto submit = vk_struct<VkSubmitInfo>(VK_STRUCTURE_TYPE_SUBMIT_INFO);
  submit.pNext = &timeline;
  if (wait_value > 0) {
    timeline.waitSemaphoreValueCount = 1;
    timeline.pWaitSemaphoreValues = &wait_value;
    submit.waitSemaphoreCount = 1;
    submit.pWaitSemaphores = &wait;
    submit.pWaitDstStageMask = &stage;
  }
  submit.commandBufferCount = 1;
  submit.pCommandBuffers = &cmd;
  submit.signalSemaphoreCount = 1;
  submit.pSignalSemaphores = &signal;
  check(vkQueueSubmit(queue, 1, &submit, VK_NULL_HANDLE), "vkQueueSubmit");
}

// Waits until `semaphore` reaches `value`; DeviceError naming `what` when it takes too long.
void wait_semaphore(VkDevice device, VkSemaphore semaphore, std::uint64_t value, const char* what) {
  auto info = vk_struct<VkSemaphoreWaitInfo>(VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO);
  info.semaphoreCount = 1;
  info.pSemaphores = &semaphore;
  info.pValues = &value;
  const VkResult result = vkWaitSemaphores(device, &info, kWaitTimeoutNs);
  MF_CHECK(result != VK_TIMEOUT, DeviceError, "[vulkan] ", what, " did not finish within ",
           kWaitTimeoutNs / 1000000000, " s; it may have hung");
  check(result, "vkWaitSemaphores");
}

// Earlier dispatches (and copies, where `after_copies`) before the accesses of `dst_stage`.
void memory_barrier(VkCommandBuffer cmd, bool after_copies, VkPipelineStageFlags dst_stage, VkAccessFlags dst_access) {
  const VkAccessFlags copy_writes = after_copies ? VkAccessFlags{VK_ACCESS_TRANSFER_WRITE_BIT} : VkAccessFlags{0};
  const VkPipelineStageFlags copy_stage =
      after_copies ? VkPipelineStageFlags{VK_PIPELINE_STAGE_TRANSFER_BIT} : VkPipelineStageFlags{0};
  auto barrier = vk_struct<VkMemoryBarrier>(VK_STRUCTURE_TYPE_MEMORY_BARRIER);
  barrier.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | copy_writes;
  barrier.dstAccessMask = dst_access;
  const VkPipelineStageFlags src_stage = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | copy_stage;
  vkCmdPipelineBarrier(cmd, src_stage, dst_stage, 0, 1, &barrier, 0, nullptr, 0, nullptr);
}

}  // namespace

struct Recorder::Batch {
  VkCommandBuffer cmd = VK_NULL_HANDLE;
  std::vector<VkDescriptorPool> pools;
  std::size_t pool = 0;            // the pool sets come from now
  std::uint32_t sets_in_pool = 0;
  std::vector<Allocation> staging;  // freed when the batch completes
  VkDeviceSize staging_bytes = 0;
  std::uint64_t value = 0;         // the timeline value signalled on completion
  std::uint32_t dispatches = 0;
  BatchQueries queries;
};

struct Recorder::TransferBatch {
  VkCommandBuffer cmd = VK_NULL_HANDLE;
  std::vector<Allocation> staging;  // freed when the batch completes
  VkDeviceSize staging_bytes = 0;
  std::uint64_t wait_compute = 0;   // the compute value it waits for (reads of what it overwrites)
  std::uint64_t value = 0;          // the transfer timeline value signalled on completion
};

Recorder::Recorder(Device& device, Memory& memory, bool profile)
    : device_(device),
      memory_(memory),
      flush_at_(kFlushDispatchesIdle),
      profiler_(device, profile),
      copy_pool_(copy_threads()) {
  const VkDevice d = device.handle();
  auto pool = vk_struct<VkCommandPoolCreateInfo>(VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO);
  pool.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  auto type = vk_struct<VkSemaphoreTypeCreateInfo>(VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO);
  type.semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE;
  auto sem = vk_struct<VkSemaphoreCreateInfo>(VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO);
  sem.pNext = &type;
  try {
    pool.queueFamilyIndex = device.compute_family();
    check(vkCreateCommandPool(d, &pool, nullptr, &pool_), "vkCreateCommandPool");
    pool.queueFamilyIndex = device.transfer_family();
    check(vkCreateCommandPool(d, &pool, nullptr, &transfer_pool_), "vkCreateCommandPool");
    check(vkCreateSemaphore(d, &sem, nullptr, &timeline_), "vkCreateSemaphore");
    check(vkCreateSemaphore(d, &sem, nullptr, &transfer_timeline_), "vkCreateSemaphore");
  } catch (...) {
    vkDestroySemaphore(d, timeline_, nullptr);  // null handles are ignored
    vkDestroySemaphore(d, transfer_timeline_, nullptr);
    vkDestroyCommandPool(d, pool_, nullptr);
    vkDestroyCommandPool(d, transfer_pool_, nullptr);
    throw;
  }
}

Recorder::~Recorder() {
  try {
    finish();
  } catch (const Error&) {  // a destructor cannot report; the device is drained below regardless
  }
  vkDeviceWaitIdle(device_.handle());  // in a destructor its result cannot be reported
  const VkDevice d = device_.handle();
  auto destroy = [&](Batch& b) {
    profiler_.destroy(b.queries);
    for (VkDescriptorPool p : b.pools) vkDestroyDescriptorPool(d, p, nullptr);
    for (const Allocation& a : b.staging) memory_.free(a);
  };
  if (open_) destroy(*open_);
  for (auto& b : in_flight_) destroy(*b);
  for (auto& b : idle_) destroy(*b);
  auto destroy_transfer = [&](TransferBatch& b) {
    for (const Allocation& a : b.staging) memory_.free(a);
  };
  if (transfer_open_) destroy_transfer(*transfer_open_);
  for (const Allocation& a : staged_) memory_.free(a);
  for (auto& b : transfers_in_flight_) destroy_transfer(*b);
  vkDestroySemaphore(d, timeline_, nullptr);
  vkDestroySemaphore(d, transfer_timeline_, nullptr);
  vkDestroyCommandPool(d, pool_, nullptr);
  vkDestroyCommandPool(d, transfer_pool_, nullptr);
}

Recorder::Batch& Recorder::open() {
  if (open_) return *open_;
  reclaim(completed());
  if (!idle_.empty()) {
    open_ = std::move(idle_.back());
    idle_.pop_back();
  } else {
    open_ = std::make_unique<Batch>();
  }
  begin_commands(device_.handle(), pool_, open_->cmd);
  open_->dispatches = 0;
  profiler_.begin(open_->cmd, open_->queries, /*after_wait=*/flush_at_ == kFlushDispatchesIdle);
  return *open_;
}

void Recorder::check_binding(const Binding& b) const {
  MF_ASSERT(b.block != nullptr, "a binding without memory");
  MF_ASSERT(b.range > 0 && b.range <= max_range(), "a binding of ", b.range, " bytes (limit ", max_range(), ")");
  MF_ASSERT(b.offset % device_.limits().storage_alignment == 0, "binding offset ", b.offset, " is not aligned");
  MF_ASSERT(b.offset + b.range <= b.block->size, "binding [", b.offset, ", +", b.range, ") past its block");
}

void Recorder::track(std::span<const Binding> reads, std::span<const Binding> writes, bool copy) {
  auto hits = [](const std::vector<Span>& spans, const Binding& b) {
    return std::any_of(spans.begin(), spans.end(), [&](const Span& s) {
      return s.block == b.block->id && s.begin < b.offset + b.range && b.offset < s.end;
    });
  };
  bool hazard = reads_since_barrier_.size() + writes_since_barrier_.size() > kMaxTracked;
  for (const Binding& b : reads) hazard = hazard || hits(writes_since_barrier_, b);  // read after write
  for (const Binding& b : writes) {
    hazard = hazard || hits(writes_since_barrier_, b) || hits(reads_since_barrier_, b);  // WAW, WAR
  }
  if (hazard) {
    // Every later command may rely on this barrier, so it reaches both stages; but it waits only
    // for the stages recorded since the last one: dispatches after dispatches (most of a forward
    // step) need not wait for copies, which some drivers make cheaper.
    memory_barrier(open_->cmd, copies_since_barrier_,
                   VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                   VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                       VK_ACCESS_TRANSFER_WRITE_BIT);
    reads_since_barrier_.clear();
    writes_since_barrier_.clear();
    copies_since_barrier_ = false;
    ++barriers_;
  }
  copies_since_barrier_ = copies_since_barrier_ || copy;
  for (const Binding& b : reads) reads_since_barrier_.push_back({b.block->id, b.offset, b.offset + b.range});
  for (const Binding& b : writes) writes_since_barrier_.push_back({b.block->id, b.offset, b.offset + b.range});
}

VkDescriptorSet Recorder::descriptor_set(Batch& batch, const Pipeline& pipeline) {
  if (batch.sets_in_pool == kSetsPerPool) ++batch.pool, batch.sets_in_pool = 0;
  if (batch.pool == batch.pools.size()) {
    const VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, kSetsPerPool * kMaxBindings};
    auto info = vk_struct<VkDescriptorPoolCreateInfo>(VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO);
    info.maxSets = kSetsPerPool;
    info.poolSizeCount = 1;
    info.pPoolSizes = &size;
    VkDescriptorPool pool = VK_NULL_HANDLE;
    check(vkCreateDescriptorPool(device_.handle(), &info, nullptr, &pool), "vkCreateDescriptorPool");
    batch.pools.push_back(pool);
  }
  auto alloc = vk_struct<VkDescriptorSetAllocateInfo>(VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO);
  alloc.descriptorPool = batch.pools[batch.pool];
  alloc.descriptorSetCount = 1;
  alloc.pSetLayouts = &pipeline.set_layout;
  VkDescriptorSet set = VK_NULL_HANDLE;
  check(vkAllocateDescriptorSets(device_.handle(), &alloc, &set), "vkAllocateDescriptorSets");
  ++batch.sets_in_pool;
  return set;
}

void Recorder::dispatch(const Pipeline& pipeline, std::initializer_list<Binding> reads,
                        std::initializer_list<Binding> writes, std::span<const std::byte> params, Groups groups) {
  const auto start = std::chrono::steady_clock::now();
  const ShaderSpec& spec = pipeline.spec;
  const std::size_t n = reads.size() + writes.size();
  MF_ASSERT(n == spec.bindings && n <= kMaxBindings, pipeline.name, " takes ", spec.bindings, " bindings, not ", n);
  MF_ASSERT(params.size() == spec.params_size, pipeline.name, " takes ", spec.params_size, " parameter bytes, not ",
            params.size());
  const auto& max = device_.limits().max_groups;
  MF_ASSERT(groups.x >= 1 && groups.y >= 1 && groups.z >= 1 && groups.x <= max[0] && groups.y <= max[1] &&
                groups.z <= max[2],
            pipeline.name, " over ", groups.x, " x ", groups.y, " x ", groups.z, " workgroups");
  VkDescriptorBufferInfo buffers[kMaxBindings];
  std::size_t i = 0;
  for (const auto* list : {&reads, &writes}) {
    for (const Binding& b : *list) {
      check_binding(b);
      buffers[i++] = {b.block->buffer, b.offset, b.range};
    }
  }
  Batch& batch = open();
  track(std::span(reads.begin(), reads.size()), std::span(writes.begin(), writes.size()), false);
  const VkDescriptorSet set = descriptor_set(batch, pipeline);
  VkWriteDescriptorSet write[kMaxBindings];
  for (std::uint32_t b = 0; b < n; ++b) {
    write[b] = vk_struct<VkWriteDescriptorSet>(VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET);
    write[b].dstSet = set;
    write[b].dstBinding = b;
    write[b].descriptorCount = 1;
    write[b].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    write[b].pBufferInfo = &buffers[b];
  }
  vkUpdateDescriptorSets(device_.handle(), static_cast<std::uint32_t>(n), write, 0, nullptr);
  vkCmdBindPipeline(batch.cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline.pipeline);
  vkCmdBindDescriptorSets(batch.cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline.layout, 0, 1, &set, 0, nullptr);
  if (!params.empty()) {
    vkCmdPushConstants(batch.cmd, pipeline.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0,
                       static_cast<std::uint32_t>(params.size()), params.data());
  }
  vkCmdDispatch(batch.cmd, groups.x, groups.y, groups.z);
  profiler_.mark(batch.cmd, batch.queries, spec.shader);
  ++dispatches_;
  record_seconds_ += seconds_since(start);
  if (++batch.dispatches >= flush_at_) flush();
}

Allocation Recorder::staging(Batch& batch, VkDeviceSize size) {
  const Allocation a = memory_.allocate(MemoryKind::staging, size, "staging");
  batch.staging.push_back(a);
  batch.staging_bytes += a.size;
  return a;
}

Binding Recorder::stage(std::span<const std::byte> bytes) {
  if (staged_bytes_ > kMaxStagingInFlight) {  // a long run without a sync point: bound what it holds
    retire_staged(open());
    flush();
    wait(submitted_);
    reclaim(submitted_);
  }
  const Allocation a = memory_.allocate(MemoryKind::staging, bytes.size(), "staging");
  staged_.push_back(a);
  staged_bytes_ += a.size;
  if (!bytes.empty()) std::memcpy(a.mapped(), bytes.data(), bytes.size());
  return {a.block, a.offset, a.size};
}

void Recorder::retire_staged(Batch& batch) {
  for (const Allocation& a : staged_) {
    batch.staging.push_back(a);
    batch.staging_bytes += a.size;
  }
  staged_.clear();
  staged_bytes_ = 0;
}

void Recorder::upload(std::span<const std::byte> src, const Binding& dst) {
  MF_ASSERT(src.size() == dst.range && dst.offset + dst.range <= dst.block->size, "upload of ", src.size(),
            " bytes into a range of ", dst.range);
  for (VkDeviceSize done = 0; done < src.size();) {
    const VkDeviceSize n = std::min<VkDeviceSize>(kCopyChunk, src.size() - done);
    Batch& batch = open();
    const Allocation s = staging(batch, n);
    copy_to_staging(s.mapped(), src.data() + done, n);
    const Binding from{s.block, s.offset, n}, to{dst.block, dst.offset + done, n};
    track(std::span(&from, 1), std::span(&to, 1), true);
    const VkBufferCopy region{s.offset, dst.offset + done, n};
    vkCmdCopyBuffer(batch.cmd, s.block->buffer, dst.block->buffer, 1, &region);
    profiler_.mark(batch.cmd, batch.queries, "copy");
    done += n;
    if (batch.staging_bytes < kFlushStaging) continue;
    flush();  // bound the staging memory a large upload holds
    VkDeviceSize in_flight = 0;
    for (const auto& b : in_flight_) in_flight += b->staging_bytes;
    for (std::size_t i = 0; in_flight > kMaxStagingInFlight && i < in_flight_.size(); ++i) {
      wait(in_flight_[i]->value);
      in_flight -= in_flight_[i]->staging_bytes;
    }
  }
}

void Recorder::copy_to_staging(std::byte* dst, const std::byte* src, std::size_t n) {
  const auto pieces = static_cast<std::int64_t>(std::min<std::size_t>(static_cast<std::size_t>(copy_pool_.size()),
                                                                       std::max<std::size_t>(1, n / kCopyPiece)));
  if (pieces <= 1) {
    std::memcpy(dst, src, n);
    return;
  }
  const std::size_t step = (n + static_cast<std::size_t>(pieces) - 1) / static_cast<std::size_t>(pieces);
  copy_pool_.run(pieces, [&](std::int64_t i, int) {
    const std::size_t begin = static_cast<std::size_t>(i) * step;
    if (begin < n) std::memcpy(dst + begin, src + begin, std::min(step, n - begin));
  });
}

void Recorder::note_reads(std::span<const Binding> reads) {
  open();
  track(reads, {}, false);
}

void Recorder::copy(const Binding& src, const Binding& dst) {
  MF_ASSERT(src.range == dst.range && src.offset + src.range <= src.block->size &&
                dst.offset + dst.range <= dst.block->size,
            "copy of ", src.range, " bytes into a range of ", dst.range);
  Batch& batch = open();
  track(std::span(&src, 1), std::span(&dst, 1), true);
  const VkBufferCopy region{src.offset, dst.offset, src.range};
  vkCmdCopyBuffer(batch.cmd, src.block->buffer, dst.block->buffer, 1, &region);
  profiler_.mark(batch.cmd, batch.queries, "copy");
}

Recorder::TransferBatch& Recorder::open_transfer() {
  if (transfer_open_) return *transfer_open_;
  reclaim_transfers(false);
  if (!transfers_idle_.empty()) {
    transfer_open_ = std::move(transfers_idle_.back());
    transfers_idle_.pop_back();
  } else {
    transfer_open_ = std::make_unique<TransferBatch>();
  }
  begin_commands(device_.handle(), transfer_pool_, transfer_open_->cmd);
  transfer_open_->wait_compute = submitted_;
  return *transfer_open_;
}

void Recorder::upload_transfer(std::span<const std::byte> src, const Binding& dst) {
  MF_ASSERT(src.size() == dst.range && dst.offset + dst.range <= dst.block->size, "upload of ", src.size(),
            " bytes into a range of ", dst.range);
  // Dispatches recorded so far may read dst (a slot's previous expert): they are submitted first,
  // and the copy waits for them (a transfer batch is opened only after every dispatch before it
  // was submitted, as flush() closes the open one first).
  if (open_ && open_->dispatches > 0) flush();  // (submits the open transfers first)
  for (VkDeviceSize done = 0; done < src.size();) {
    const VkDeviceSize n = std::min<VkDeviceSize>(kCopyChunk, src.size() - done);
    TransferBatch& batch = open_transfer();
    const Allocation s = memory_.allocate(MemoryKind::staging, n, "staging");
    batch.staging.push_back(s);
    batch.staging_bytes += s.size;
    copy_to_staging(s.mapped(), src.data() + done, n);
    const VkBufferCopy region{s.offset, dst.offset + done, n};
    vkCmdCopyBuffer(batch.cmd, s.block->buffer, dst.block->buffer, 1, &region);
    done += n;
    if (batch.staging_bytes >= kFlushStaging) {
      flush_transfers();  // bound the staging memory a large upload holds
      VkDeviceSize in_flight = 0;
      for (const auto& b : transfers_in_flight_) in_flight += b->staging_bytes;
      if (in_flight > kMaxStagingInFlight) reclaim_transfers(true);
    }
  }
}

void Recorder::flush_transfers() {
  if (!transfer_open_) return;
  TransferBatch& batch = *transfer_open_;
  batch.value = transfers_submitted_ + 1;
  submit_commands(device_.transfer_queue(), batch.cmd, timeline_, batch.wait_compute, VK_PIPELINE_STAGE_TRANSFER_BIT,
                  transfer_timeline_, batch.value);
  transfers_submitted_ = compute_waits_for_ = batch.value;
  transfers_in_flight_.push_back(std::move(transfer_open_));
}

void Recorder::reclaim_transfers(bool wait_all) {
  if (transfers_in_flight_.empty()) return;
  std::uint64_t completed = 0;
  if (wait_all) {
    const auto start = std::chrono::steady_clock::now();
    wait_semaphore(device_.handle(), transfer_timeline_, transfers_submitted_, "the transfer queue");
    wait_seconds_ += seconds_since(start);
  }
  check(vkGetSemaphoreCounterValue(device_.handle(), transfer_timeline_, &completed), "vkGetSemaphoreCounterValue");
  while (!transfers_in_flight_.empty() && transfers_in_flight_.front()->value <= completed) {
    std::unique_ptr<TransferBatch> batch = std::move(transfers_in_flight_.front());
    transfers_in_flight_.pop_front();
    for (const Allocation& a : batch->staging) memory_.free(a);
    batch->staging.clear();
    batch->staging_bytes = 0;
    check(vkResetCommandBuffer(batch->cmd, 0), "vkResetCommandBuffer");
    transfers_idle_.push_back(std::move(batch));
  }
}

void Recorder::download(const Binding& src, std::span<std::byte> dst) {
  download(std::span(&src, 1), std::span(&dst, 1));
}

void Recorder::download(std::span<const Binding> srcs, std::span<const std::span<std::byte>> dsts) {
  MF_ASSERT(srcs.size() == dsts.size(), "download of ", srcs.size(), " ranges into ", dsts.size());
  // Pieces of at most kCopyChunk; as many per wait as that much staging holds.
  struct Piece {
    Allocation staging;
    std::byte* to;
    VkDeviceSize bytes;
  };
  std::vector<Piece> pieces;
  VkDeviceSize pending = 0;
  const auto complete = [&] {
    // The host reads the copies: make them visible to the host domain before the semaphore signals.
    memory_barrier(open().cmd, true, VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT);
    flush();
    wait(submitted_);
    for (const Piece& p : pieces) std::memcpy(p.to, p.staging.mapped(), p.bytes);  // before reclaim() frees them
    reclaim(submitted_);
    pieces.clear();
    pending = 0;
  };
  for (std::size_t i = 0; i < srcs.size(); ++i) {
    const Binding& src = srcs[i];
    const std::span<std::byte> dst = dsts[i];
    MF_ASSERT(dst.size() == src.range && src.offset + src.range <= src.block->size, "download of ", src.range,
              " bytes into ", dst.size());
    for (VkDeviceSize done = 0; done < dst.size();) {
      const VkDeviceSize n = std::min<VkDeviceSize>(kCopyChunk, dst.size() - done);
      if (!pieces.empty() && pending + n > kCopyChunk) complete();
      Batch& batch = open();
      retire_staged(batch);  // every dispatch that could read them was recorded before this copy
      const Allocation s = staging(batch, n);
      const Binding from{src.block, src.offset + done, n}, to{s.block, s.offset, n};
      track(std::span(&from, 1), std::span(&to, 1), true);
      const VkBufferCopy region{src.offset + done, s.offset, n};
      vkCmdCopyBuffer(batch.cmd, src.block->buffer, s.block->buffer, 1, &region);
      profiler_.mark(batch.cmd, batch.queries, "copy");
      pieces.push_back({s, dst.data() + done, n});
      pending += n;
      done += n;
    }
  }
  if (!pieces.empty()) complete();
  device_.validation_log().rethrow_new();
}

void Recorder::flush() {
  if (!open_) return;
  flush_transfers();  // compute recorded after an upload waits for it
  Batch& batch = *open_;
  batch.value = submitted_ + 1;
  // Uploads on the transfer lane come first.
  submit_commands(device_.compute_queue(), batch.cmd, transfer_timeline_, compute_waits_for_,
                  VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT, timeline_, batch.value);
  submitted_ = batch.value;
  flush_at_ = std::min(2 * flush_at_, kFlushDispatches);
  in_flight_.push_back(std::move(open_));
}

std::uint64_t Recorder::completed() const {
  std::uint64_t value = 0;
  check(vkGetSemaphoreCounterValue(device_.handle(), timeline_, &value), "vkGetSemaphoreCounterValue");
  return value;
}

void Recorder::wait(std::uint64_t value) {
  const auto start = std::chrono::steady_clock::now();
  if (completed() < value) {
    if (value > 1) {
      wait_semaphore(device_.handle(), timeline_, value - 1, "the GPU");
      reclaim(value - 1);  // the batches before the last one, while the GPU runs it
    }
    const auto polling = std::chrono::steady_clock::now();
    while (completed() < value && seconds_since(polling) < kPollSeconds) std::this_thread::yield();
    wait_semaphore(device_.handle(), timeline_, value, "the GPU");
  }
  wait_seconds_ += seconds_since(start);
  if (value >= submitted_) flush_at_ = kFlushDispatchesIdle;
}

void Recorder::reclaim(std::uint64_t completed) {
  while (!in_flight_.empty() && in_flight_.front()->value <= completed) {
    std::unique_ptr<Batch> batch = std::move(in_flight_.front());
    in_flight_.pop_front();
    profiler_.collect(batch->queries);
    for (VkDescriptorPool p : batch->pools) check(vkResetDescriptorPool(device_.handle(), p, 0), "vkResetDescriptorPool");
    batch->pool = 0;
    batch->sets_in_pool = 0;
    for (const Allocation& a : batch->staging) memory_.free(a);
    batch->staging.clear();
    batch->staging_bytes = 0;
    check(vkResetCommandBuffer(batch->cmd, 0), "vkResetCommandBuffer");
    idle_.push_back(std::move(batch));
  }
  memory_.collect(completed);
}

std::map<std::string, double> Recorder::stats() const {
  std::map<std::string, double> s{
      {"vk_dispatches", static_cast<double>(dispatches_ - base_.dispatches)},
      {"vk_barriers", static_cast<double>(barriers_ - base_.barriers)},
      {"vk_submits", static_cast<double>(submitted_ - base_.submits)},
      {"vk_record_seconds", record_seconds_ - base_.record_seconds},
      {"vk_wait_seconds", wait_seconds_ - base_.wait_seconds},
  };
  if (profiler_.enabled()) {
    s["gpu_idle_seconds"] = profiler_.idle_seconds();
    s["gpu_idle_after_wait_seconds"] = profiler_.idle_after_wait_seconds();
  }
  for (const auto& [label, u] : profiler_.usage()) {
    s["gpu_seconds." + label] = u.seconds;
    s["gpu_commands." + label] = static_cast<double>(u.commands);
  }
  return s;
}

void Recorder::reset_stats() {
  base_ = {dispatches_, barriers_, submitted_, record_seconds_, wait_seconds_};
  profiler_.reset();
}

void Recorder::finish() {
  flush_transfers();
  if (!staged_.empty()) retire_staged(open());
  flush();
  if (submitted_ > 0) {
    wait(submitted_);
    reclaim(submitted_);
  }
  reclaim_transfers(true);
  device_.validation_log().rethrow_new();
}

}  // namespace moeflux::backend::vk
