// The device tier: slot storage and the VulkanBackend members that plan it, serve moe_experts
// from it (misses uploaded into their slot through staging, hits with no transfer; or uploaded
// ahead of it by upload_expert as their reads land) and report it.
#include "moeflux/backend/vulkan/device_expert_cache.h"

#include <algorithm>
#include <chrono>

#include "moeflux/backend/vulkan/ops/tensor_access.h"
#include "moeflux/backend/vulkan/structs.h"
#include "moeflux/backend/vulkan/vulkan_backend.h"
#include "moeflux/format/quant.h"
#include "moeflux/util/error.h"

namespace moeflux::backend::vk {
namespace {

std::vector<int> expert_counts(const ExpertCacheLayout& layout) {
  std::vector<int> counts;
  for (const auto& l : layout.layers) counts.push_back(l.n_experts);
  return counts;
}

// Slots the budget buys, capped at every expert; BudgetError below k.
std::uint64_t slots_for(const ExpertCacheLayout& layout, std::uint64_t slot_bytes, std::uint64_t budget) {
  std::uint64_t total = 0;
  for (const auto& l : layout.layers) {
    MF_CHECK(layout.k >= 1 && layout.k <= l.n_experts, ConfigError, "[device_cache] experts_per_token=", layout.k,
             " but layer ", l.layer, " has ", l.n_experts, " experts");
    total += static_cast<std::uint64_t>(l.n_experts);
  }
  if (total == 0 || slot_bytes == 0) return 0;
  const std::uint64_t records = budget / slot_bytes, k = static_cast<std::uint64_t>(layout.k);
  if (budget != 0 && records < k) {
    const std::uint64_t minimum = k * slot_bytes;
    throw BudgetError(util::concat("[device_cache] device_cache_bytes=", budget, " holds ", records,
                                   " expert records of ", slot_bytes, " bytes as uploaded; one layer's top-k needs ",
                                   k, "; the smallest device budget that works is ", minimum, " bytes (",
                                   (minimum + (1u << 20) - 1) >> 20, " MiB); raise device_cache_bytes, or leave "
                                   "it unset to plan it from free device memory"));
  }
  return budget == 0 ? total : std::min(records, total);
}

}  // namespace

DeviceExpertCache::DeviceExpertCache(const std::shared_ptr<Context>& context, const ExpertCacheLayout& layout,
                                     std::array<std::uint64_t, 3> block_bytes, std::uint64_t budget_bytes)
    : slot_bytes_(block_bytes[0] + block_bytes[1] + block_bytes[2]),
      block_bytes_(block_bytes),
      slots_(util::plan_pools(expert_counts(layout), slots_for(layout, slot_bytes_, budget_bytes), layout.k),
             expert_counts(layout)) {
  for (std::size_t m = 0; m < layout.layers.size(); ++m) {
    const int layer = layout.layers[m].layer;
    MF_ASSERT(layer >= 0, "MoE layer ", layer);
    if (layer >= static_cast<int>(moe_index_.size())) moe_index_.resize(static_cast<std::size_t>(layer) + 1, -1);
    moe_index_[static_cast<std::size_t>(layer)] = static_cast<int>(m);
  }
  const std::uint64_t n = slots_for(layout, slot_bytes_, budget_bytes);
  storage_.resize(n);
  for (auto& slot : storage_) {
    for (std::size_t r = 0; r < 3; ++r) {
      const Allocation a = context->memory.allocate(MemoryKind::device, block_bytes[r], "an expert slot");
      slot[r] = std::make_shared<VulkanStorage>(context, a, block_bytes[r]);
    }
  }
  holder_.assign(n, {-1, -1});
  uploaded_ahead_.assign(n, false);
  n_experts_ = expert_counts(layout);
  resident_.assign(n_experts_.size(), 0);
  for (const int e : n_experts_) max_experts_ = std::max(max_experts_, e);
  const auto words = static_cast<std::int64_t>(n_experts_.size()) * max_experts_ * 6;
  if (words > 0) {
    const auto bytes = static_cast<VkDeviceSize>(words) * 4;
    const Allocation a = context->memory.allocate(MemoryKind::device, bytes, "the expert table");
    table_ = Tensor(std::make_shared<VulkanStorage>(context, a, bytes), Dtype::f32, {words});
    const std::vector<std::byte> zeros(bytes);
    context->recorder.upload(zeros, byte_range(table_, 0, words));
  }
}

bool DeviceExpertCache::holds_all() const {
  std::uint64_t total = 0;
  for (const int e : n_experts_) total += static_cast<std::uint64_t>(e);
  return total > 0 && storage_.size() == total;
}

void DeviceExpertCache::write_entry(Recorder& recorder, int moe_layer, std::int32_t expert,
                                    const std::array<std::uint32_t, 6>& words) {
  const std::int64_t at = table_first(moe_layer) + static_cast<std::int64_t>(expert) * 6;
  recorder.upload(std::as_bytes(std::span(words)), byte_range(table_, at, 6));
}

void DeviceExpertCache::record_slot(Recorder& recorder, std::uint32_t s, int moe_layer, std::int32_t expert) {
  auto& [old_layer, old_expert] = holder_[s];
  if (old_layer >= 0) {
    write_entry(recorder, old_layer, old_expert, {});
    --resident_[static_cast<std::size_t>(old_layer)];
  }
  std::array<std::uint32_t, 6> words{};
  for (std::size_t r = 0; r < 3; ++r) {
    const VkDeviceAddress address = storage_[s][r]->allocation().address();
    words[2 * r] = static_cast<std::uint32_t>(address);
    words[2 * r + 1] = static_cast<std::uint32_t>(address >> 32);
  }
  write_entry(recorder, moe_layer, expert, words);
  holder_[s] = {moe_layer, expert};
  ++resident_[static_cast<std::size_t>(moe_layer)];
}

void DeviceExpertCache::forget_slot(Recorder& recorder, std::uint32_t s) {
  auto& [old_layer, old_expert] = holder_[s];
  if (old_layer >= 0) {
    write_entry(recorder, old_layer, old_expert, {});
    --resident_[static_cast<std::size_t>(old_layer)];
  }
  slots_.discard(s);
  holder_[s] = {-1, -1};
  uploaded_ahead_[s] = false;
}

void DeviceExpertCache::mark_uploaded_ahead(std::uint32_t s) {
  uploaded_ahead_[s] = true;
  uploaded_ahead_list_.push_back(s);
}

void DeviceExpertCache::clear_uploaded_ahead() {
  for (const std::uint32_t s : uploaded_ahead_list_) uploaded_ahead_[s] = false;
  uploaded_ahead_list_.clear();
}

int DeviceExpertCache::moe_layer(int layer) const {
  return layer >= 0 && layer < static_cast<int>(moe_index_.size()) ? moe_index_[static_cast<std::size_t>(layer)] : -1;
}

std::uint64_t VulkanBackend::expert_slot_bytes(const ExpertCacheLayout& layout) const {
  std::array<std::uint64_t, 3> role{};
  for (const auto& l : layout.layers) {
    MF_CHECK(l.blocks.size() == 3, FormatError, "[device_cache] layer ", l.layer, " has expert records of ",
             l.blocks.size(), " blocks; expected gate, up and down");
    for (std::size_t r = 0; r < 3; ++r) role[r] = std::max(role[r], weight_form(l.blocks[r], "device_cache").bytes);
  }
  const std::uint64_t a = context_->memory.alignment();
  std::uint64_t total = 0;
  for (const std::uint64_t b : role) total += (std::max<std::uint64_t>(b, 1) + a - 1) / a * a;  // as allocated
  return layout.layers.empty() ? 0 : total;
}

void VulkanBackend::configure_expert_cache(const ExpertCacheLayout& layout, std::uint64_t budget_bytes) {
  expert_cache_.reset();
  if (expert_slot_bytes(layout) == 0) return;
  std::array<std::uint64_t, 3> role{};
  const std::uint64_t a = context_->memory.alignment();
  for (const auto& l : layout.layers) {
    for (std::size_t r = 0; r < 3; ++r) {
      const std::uint64_t b = weight_form(l.blocks[r], "device_cache").bytes;
      role[r] = std::max(role[r], (std::max<std::uint64_t>(b, 1) + a - 1) / a * a);
    }
  }
  expert_cache_ = std::make_unique<DeviceExpertCache>(context_, layout, role, budget_bytes);
  layout_k_ = layout.k;
  layer_forms_.clear();
  layer_blocks_.clear();
  for (const auto& l : layout.layers) {
    layer_blocks_.push_back({l.blocks[0], l.blocks[1], l.blocks[2]});
    ExpertForms forms;
    for (std::size_t r = 0; r < 3; ++r) forms.role[r] = weight_form(l.blocks[r], "device_cache");
    forms.gate_shape = l.blocks[0].shape;
    forms.down_shape = l.blocks[2].shape;
    layer_forms_.push_back(forms);
  }
}

int VulkanBackend::expert_capacity(int layer) const {
  const int m = expert_cache_ ? expert_cache_->moe_layer(layer) : -1;
  return m < 0 ? -1 : static_cast<int>(expert_cache_->capacity(m));
}

std::vector<bool> VulkanBackend::experts_held(int layer, std::span<const std::int32_t> experts) const {
  std::vector<bool> held(experts.size(), false);
  const int m = expert_cache_ ? expert_cache_->moe_layer(layer) : -1;
  if (m < 0) return held;
  for (std::size_t i = 0; i < experts.size(); ++i) {
    const std::int32_t e = experts[i];
    held[i] = e >= 0 && e < expert_cache_->n_experts(m) && expert_cache_->slots().holds(m, e);
  }
  return held;
}

std::vector<ExpertWeights> VulkanBackend::held_expert_views(std::span<const ExpertWeights> experts) const {
  std::vector<ExpertWeights> out(experts.begin(), experts.end());
  for (ExpertWeights& w : out) {
    if (!w.on_device) continue;
    const int m = expert_cache_ ? expert_cache_->moe_layer(w.layer) : -1;
    MF_CHECK(m >= 0 && w.expert >= 0 && w.expert < expert_cache_->n_experts(m) &&
                 expert_cache_->slots().holds(m, w.expert),
             ShapeError, "[moe_experts] expert ", w.expert, " of layer ", w.layer,
             " is marked on the device but the device tier does not hold it; ask experts_held just before");
    const auto& blocks = layer_blocks_[static_cast<std::size_t>(m)];
    w.gate = blocks[0];
    w.up = blocks[1];
    w.down = blocks[2];
  }
  return out;
}

std::uint32_t VulkanBackend::expert_batch(std::span<const ExpertWeights> experts) const {
  if (experts.empty()) return 1;
  const int m = expert_cache_ ? expert_cache_->moe_layer(experts.front().layer) : -1;
  if (m < 0) return static_cast<std::uint32_t>(experts.size());
  return expert_cache_->capacity(m);
}

std::array<Tensor, 3> VulkanBackend::slot_tensors(std::uint32_t slot, const ExpertWeights& w) const {
  const auto& storage = expert_cache_->slot(slot);
  std::array<Tensor, 3> out;
  for (std::size_t r = 0; r < 3; ++r) {
    const format::TensorView& view = w.block(r);
    const WeightForm form = weight_form(view, "moe_experts");
    MF_CHECK(form.bytes <= storage[r]->bytes(), ShapeError, "[moe_experts] expert ", w.expert, " of layer ", w.layer,
             " block '", view.name, "' needs ", form.bytes, " bytes on the device, more than its slot's ",
             storage[r]->bytes(), " planned from the expert layout");
    out[r] = weight_tensor(storage[r], form, view.shape);
  }
  return out;
}

void VulkanBackend::upload_to_slot(const ExpertWeights& w, const std::array<Tensor, 3>& blocks) {
  DeviceExpertCache& cache = *expert_cache_;
  for (std::size_t r = 0; r < 3; ++r) {
    const format::TensorView& view = w.block(r);
    write_weight(view, blocks[r], /*on_transfer=*/true);
    cache.stats.bytes_uploaded += weight_form(view, "moe_experts").bytes;
  }
  context_->recorder.flush_transfers();  // this expert's copies start now
}

std::vector<std::array<Tensor, 3>> VulkanBackend::expert_tensors(std::span<const ExpertWeights> batch) {
  std::vector<std::array<Tensor, 3>> out(batch.size());
  const int m = batch.empty() || !expert_cache_ ? -1 : expert_cache_->moe_layer(batch.front().layer);
  const bool named = std::all_of(batch.begin(), batch.end(), [&](const ExpertWeights& w) {
    return w.expert >= 0 && w.layer == batch.front().layer;
  });
  if (m < 0 || !named) {  // no tier for these experts: uploaded for this call only
    for (std::size_t i = 0; i < batch.size(); ++i) {
      for (std::size_t r = 0; r < 3; ++r) out[i][r] = resident(batch[i].block(r));
    }
    return out;
  }
  DeviceExpertCache& cache = *expert_cache_;
  MF_ASSERT(batch.size() <= cache.capacity(m), batch.size(), " experts in a batch of capacity ", cache.capacity(m));
  util::SlotPools& slots = cache.slots();
  slots.begin_batch();
  // Hits first, then the experts upload_expert put in ahead of this call (their miss is counted
  // already), so that recency ends as if they were uploaded here: hits, then misses, each ascending.
  std::vector<std::int64_t> slot(batch.size(), -1);
  for (const bool ahead : {false, true}) {
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const std::int64_t held = slots.slot_of(m, batch[i].expert);
      if (held < 0 || cache.uploaded_ahead(static_cast<std::uint32_t>(held)) != ahead) continue;
      slot[i] = slots.find(m, batch[i].expert);
      if (ahead) cache.clear_uploaded_ahead(static_cast<std::uint32_t>(held));
      else ++cache.stats.hits;
    }
  }
  const auto start = std::chrono::steady_clock::now();
  bool uploaded = false;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const bool hit = slot[i] >= 0;
    MF_ASSERT(hit || !batch[i].on_device, "expert ", batch[i].expert, " of layer ", batch[i].layer,
              " was held by the device tier and is gone");
    if (!hit) {
      bool evicted = false;
      slot[i] = slots.assign(m, batch[i].expert, &evicted);
      cache.record_slot(context_->recorder, static_cast<std::uint32_t>(slot[i]), m, batch[i].expert);
      ++cache.stats.misses;
      cache.stats.evictions += evicted ? 1 : 0;
      uploaded = true;
    }
    out[i] = slot_tensors(static_cast<std::uint32_t>(slot[i]), batch[i]);
    if (!hit) upload_to_slot(batch[i], out[i]);
  }
  if (uploaded) cache.stats.upload_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

void VulkanBackend::begin_expert_uploads(int layer, std::span<const std::int32_t> batch) {
  upload_layer_ = expert_cache_ ? expert_cache_->moe_layer(layer) : -1;
  upload_batch_.assign(batch.begin(), batch.end());
  if (upload_layer_ < 0) return;
  DeviceExpertCache& cache = *expert_cache_;
  const int m = upload_layer_;
  MF_CHECK(batch.size() <= cache.capacity(m), ShapeError, "[begin_expert_uploads] ", batch.size(),
           " experts of layer ", layer, " in one batch; the device tier holds ", cache.capacity(m),
           " at once (expert_capacity)");
  for (std::size_t i = 0; i < batch.size(); ++i) {
    MF_CHECK(batch[i] >= 0 && batch[i] < cache.n_experts(m) && (i == 0 || batch[i - 1] < batch[i]), ShapeError,
             "[begin_expert_uploads] the batch must list experts of layer ", layer, " (0..", cache.n_experts(m) - 1,
             ") ascending, without repeats; found ", batch[i], " at ", i);
  }
  cache.clear_uploaded_ahead();  // a batch given up (an error) leaves none behind
  util::SlotPools& slots = cache.slots();
  slots.begin_batch();
  for (const std::int32_t e : batch) slots.find(m, e);  // pinned: no upload of this batch evicts one
}

void VulkanBackend::close_expert_uploads(std::span<const ExpertWeights> experts) {
  const bool begun = upload_layer_ >= 0 && !experts.empty() && experts.size() == upload_batch_.size() &&
                     expert_cache_->moe_layer(experts.front().layer) == upload_layer_ &&
                     std::equal(experts.begin(), experts.end(), upload_batch_.begin(),
                                [](const ExpertWeights& w, std::int32_t e) { return w.expert == e; });
  if (!begun && expert_cache_) expert_cache_->clear_uploaded_ahead();
  upload_layer_ = -1;
  upload_batch_.clear();
}

bool VulkanBackend::upload_expert(const ExpertWeights& w) {
  const int m = expert_cache_ && w.expert >= 0 ? expert_cache_->moe_layer(w.layer) : -1;
  if (m < 0) return false;
  MF_CHECK(m == upload_layer_ && std::binary_search(upload_batch_.begin(), upload_batch_.end(), w.expert),
           ShapeError, "[upload_expert] expert ", w.expert, " of layer ", w.layer,
           " is not in the batch begun by begin_expert_uploads");
  DeviceExpertCache& cache = *expert_cache_;
  util::SlotPools& slots = cache.slots();
  if (slots.holds(m, w.expert)) return true;  // pinned by the batch: moe_experts counts its hit
  // Every check before the slot changes hands, so that a bad record leaves the tier as it was.
  for (std::size_t r = 0; r < 3; ++r) {
    const format::TensorView& view = w.block(r);
    const WeightForm form = weight_form(view, "upload_expert");
    const std::uint64_t needed = format::stored_nbytes(view.dtype, view.shape, form.quant);
    MF_CHECK(form.bytes <= cache.block_bytes(r) && view.data != nullptr && view.nbytes >= needed, ShapeError,
             "[upload_expert] expert ", w.expert, " of layer ", w.layer, " block '", view.name, "' (",
             view.data == nullptr ? 0 : view.nbytes, " bytes given, ", needed, " needed) does not fit its slot of ",
             cache.block_bytes(r), " bytes planned from the expert layout");
  }
  const auto start = std::chrono::steady_clock::now();
  bool evicted = false;
  const std::uint32_t slot = slots.assign(m, w.expert, &evicted);
  try {
    cache.record_slot(context_->recorder, slot, m, w.expert);
    upload_to_slot(w, slot_tensors(slot, w));
  } catch (...) {
    cache.forget_slot(context_->recorder, slot);
    throw;
  }
  ++cache.stats.misses;
  cache.stats.evictions += evicted ? 1 : 0;
  cache.mark_uploaded_ahead(slot);
  cache.stats.upload_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return true;
}

DeviceMemoryInfo VulkanBackend::memory_info() const {
  const Device& dev = device();
  const VkPhysicalDeviceMemoryProperties& props = dev.memory_properties();
  DeviceMemoryInfo info;
  info.allocated_bytes = context_->memory.bytes_in_use(MemoryKind::device) + context_->memory.bytes_in_use(MemoryKind::shared);
  auto budget = vk_struct<VkPhysicalDeviceMemoryBudgetPropertiesEXT>(
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT);
  auto props2 = vk_struct<VkPhysicalDeviceMemoryProperties2>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2);
  if (dev.memory_budget()) {
    props2.pNext = &budget;
    vkGetPhysicalDeviceMemoryProperties2(dev.physical(), &props2);
    info.from_budget_extension = true;
  }
  for (std::uint32_t h = 0; h < props.memoryHeapCount; ++h) {
    if ((props.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) == 0) continue;
    info.heap_bytes += props.memoryHeaps[h].size;
    if (info.from_budget_extension && budget.heapBudget[h] > budget.heapUsage[h])
      info.free_bytes += budget.heapBudget[h] - budget.heapUsage[h];
  }
  if (!info.from_budget_extension) info.free_bytes = info.heap_bytes > info.allocated_bytes ? info.heap_bytes - info.allocated_bytes : 0;
  return info;
}

std::map<std::string, double> VulkanBackend::stats() const {
  std::map<std::string, double> out = context_->recorder.stats();
  if (!expert_cache_) return out;
  const DeviceExpertCache& c = *expert_cache_;
  const DeviceTierStats& s = c.stats;
  const std::uint64_t lookups = s.hits + s.misses;
  out.merge(std::map<std::string, double>{{"device_hits", static_cast<double>(s.hits)},
          {"device_misses", static_cast<double>(s.misses)},
          // Layers run from the device's routing look nothing up one by one: every expert is held.
          {"device_hit_rate", lookups ? static_cast<double>(s.hits) / static_cast<double>(lookups)
                                      : s.routed_layers > 0 ? 1.0 : 0.0},
          {"device_bytes_uploaded", static_cast<double>(s.bytes_uploaded)},
          {"device_evictions", static_cast<double>(s.evictions)},
          {"device_routed_layers", static_cast<double>(s.routed_layers)},
          {"device_upload_seconds", s.upload_seconds},
          {"device_slots", static_cast<double>(c.n_slots())},
          {"device_slot_bytes", static_cast<double>(c.slot_bytes())},
          {"device_cache_bytes", static_cast<double>(c.cache_bytes())}});
  return out;
}

void VulkanBackend::reset_stats() {
  context_->recorder.reset_stats();
  if (expert_cache_) expert_cache_->stats = {};
}

}  // namespace moeflux::backend::vk
