// The public expert store: plans the slots from the budget, looks every fetch up in the slot
// cache, and reads all of a fetch's misses in one call of the read path, handing each record to the
// caller as it lands.
#include "moeflux/experts/expert_store.h"

#include <algorithm>
#include <chrono>
#include <system_error>

#include "moeflux/experts/cache_plan.h"
#include "moeflux/experts/record_reader.h"
#include "moeflux/util/slot_pools.h"
#include "moeflux/experts/slot_memory.h"
#include "moeflux/util/error.h"

namespace moeflux::experts {

namespace {

std::vector<ExpertFile> expert_files(const format::PackedModel& model) {
  std::vector<ExpertFile> files;
  for (const auto& entry : model.manifest().expert_layers)
    files.push_back({model.expert_file_path(entry), entry.file_size(), entry.layer});
  return files;
}

std::vector<int> expert_counts(const format::Manifest& manifest) {
  std::vector<int> counts;
  for (const auto& entry : manifest.expert_layers) counts.push_back(entry.n_experts);
  return counts;
}

}  // namespace

struct ExpertStore::Impl {
  Impl(std::shared_ptr<const format::PackedModel> m, const StoreOptions& options)
      : model(std::move(m)),
        plan(plan_cache(model->manifest(), options.cache_bytes, options.experts_per_token)),
        cache(plan, expert_counts(model->manifest())),
        memory(plan.n_slots, plan.slot_bytes),
        reader(expert_files(*model), options.io, options.queue_depth, options.fault_injector) {
    const auto& layers = model->manifest().expert_layers;
    for (std::size_t i = 0; i < layers.size(); ++i) {
      if (layers[i].layer >= static_cast<int>(moe_index.size())) moe_index.resize(layers[i].layer + 1, -1);
      moe_index[layers[i].layer] = static_cast<int>(i);
    }
  }

  // Index of decoder layer `layer` among the MoE layers.
  int moe_layer(int layer) const {
    MF_ASSERT(layer >= 0 && layer < static_cast<int>(moe_index.size()) && moe_index[layer] >= 0,
              "fetch of experts of layer ", layer, ", which has none");
    return moe_index[layer];
  }

  [[noreturn]] void throw_read_error(const ReadRequest& r, std::size_t failed) const;

  std::shared_ptr<const format::PackedModel> model;
  CachePlan plan;
  util::SlotPools cache;
  SlotMemory memory;
  RecordReader reader;  // after memory, so it goes first: no read may outlive the slots
  std::vector<int> moe_index;  // decoder layer -> MoE layer, -1 where none
  StoreStats stats;
  std::vector<ReadRequest> requests;  // reused by every fetch
  std::vector<std::uint32_t> request_slots;
  std::vector<std::size_t> request_experts;  // per request: its index in the fetch's experts
};

ExpertStore::ExpertStore(std::shared_ptr<const format::PackedModel> model, const StoreOptions& options) {
  MF_ASSERT(model != nullptr, "expert store without a model");
  MF_CHECK(options.queue_depth >= 1 && options.queue_depth <= 4096, ConfigError,
           "[open_expert_store] queue_depth=", options.queue_depth, "; pass a value from 1 to 4096");
  impl_ = std::make_unique<Impl>(std::move(model), options);
}

ExpertStore::~ExpertStore() = default;

int ExpertStore::capacity(int layer) const {
  const int m = impl_->moe_layer(layer);
  const int n_experts = impl_->model->manifest().expert_layers[static_cast<std::size_t>(m)].n_experts;
  return static_cast<int>(std::min<std::uint32_t>(impl_->cache.pool_size(m), static_cast<std::uint32_t>(n_experts)));
}

std::uint64_t ExpertStore::min_cache_bytes(const format::PackedModel& model, int k) {
  return experts::min_cache_bytes(model.manifest(), k);
}

std::vector<ExpertRecord> ExpertStore::fetch(int layer, std::span<const std::int32_t> experts,
                                             const RecordReady& on_ready) {
  Impl& s = *impl_;
  const int m = s.moe_layer(layer);
  const format::ExpertLayerEntry& entry = s.model->manifest().expert_layers[static_cast<std::size_t>(m)];
  MF_ASSERT(experts.size() <= static_cast<std::size_t>(capacity(layer)), "fetch of ", experts.size(),
            " experts of layer ", layer, ", more than its capacity ", capacity(layer));
  for (std::size_t i = 0; i < experts.size(); ++i) {
    MF_ASSERT(experts[i] >= 0 && experts[i] < entry.n_experts, "expert ", experts[i], " of layer ", layer,
              " outside 0..", entry.n_experts - 1);
    MF_ASSERT(i == 0 || experts[i - 1] < experts[i], "experts of a fetch must be ascending and unique");
  }

  // Hits first, so that a miss never evicts a record this fetch is about to use.
  s.cache.begin_batch();
  std::vector<std::int64_t> slots(experts.size());
  for (std::size_t i = 0; i < experts.size(); ++i) slots[i] = s.cache.find(m, experts[i]);
  std::vector<bool> hit(experts.size());
  s.requests.clear();
  s.request_slots.clear();
  s.request_experts.clear();
  for (std::size_t i = 0; i < experts.size(); ++i) {
    hit[i] = slots[i] >= 0;
    if (hit[i]) {
      ++s.stats.hits;
      continue;
    }
    bool evicted = false;
    const std::uint32_t slot = s.cache.assign(m, experts[i], &evicted);
    slots[i] = slot;
    s.stats.evictions += evicted ? 1 : 0;
    ++s.stats.misses;
    ReadRequest r;
    r.file = static_cast<std::size_t>(m);
    r.offset = static_cast<std::uint64_t>(experts[i]) * entry.stride;
    r.length = entry.stride;
    r.buffer = s.memory.slot(slot);
    r.layer = layer;
    r.expert = experts[i];
    s.requests.push_back(r);
    s.request_slots.push_back(slot);
    s.request_experts.push_back(i);
  }

  // Every record's views are known before its bytes: on_ready can hand each over as it lands.
  std::vector<ExpertRecord> records(experts.size());
  for (std::size_t i = 0; i < experts.size(); ++i) {
    const std::byte* base = s.memory.slot(static_cast<std::uint64_t>(slots[i]));
    records[i].expert = experts[i];
    records[i].blocks.reserve(entry.blocks.size());
    for (const auto& b : entry.blocks) {
      records[i].blocks.push_back({b.name, b.dtype, b.shape, base + b.offset, static_cast<std::size_t>(b.nbytes),
                                   b.group_size, b.scale_dtype});
    }
  }
  const auto announce_hits = [&] {
    for (std::size_t i = 0; i < experts.size(); ++i)
      if (hit[i]) on_ready(i, records[i]);
  };
  if (s.requests.empty()) {
    if (on_ready) announce_hits();
    return records;
  }

  const auto start = std::chrono::steady_clock::now();
  auto last_landed = start;
  ReadDone on_done;
  if (on_ready) {
    // The hits go with the first read to land, so that their use overlaps the reads in flight.
    on_done = [&, hits_announced = false](std::size_t j) mutable {
      last_landed = std::chrono::steady_clock::now();
      if (!hits_announced) {
        hits_announced = true;
        announce_hits();
      }
      if (s.requests[j].ok()) on_ready(s.request_experts[j], records[s.request_experts[j]]);
    };
  }
  try {
    s.reader.read(s.requests, on_done);
  } catch (...) {  // nothing is in flight (ReadPath::read); no slot may claim unread bytes
    for (const ReadRequest& r : s.requests) s.stats.bytes_read += r.done;
    for (std::uint32_t slot : s.request_slots) s.cache.discard(slot);
    throw;
  }
  // With on_ready, the time until the last read landed (its work after that is not reading).
  const auto end = on_ready ? last_landed : std::chrono::steady_clock::now();
  s.stats.read_wait_seconds += std::chrono::duration<double>(end - start).count();
  const ReadRequest* first_failure = nullptr;
  std::size_t failed = 0;
  for (std::size_t i = 0; i < s.requests.size(); ++i) {
    const ReadRequest& r = s.requests[i];
    s.stats.bytes_read += r.done;
    if (r.ok()) continue;
    s.cache.discard(s.request_slots[i]);
    if (failed++ == 0) first_failure = &r;
  }
  if (first_failure != nullptr) s.throw_read_error(*first_failure, failed);
  return records;
}

void ExpertStore::Impl::throw_read_error(const ReadRequest& r, std::size_t failed) const {
  const ExpertFile& file = reader.file(r.file);
  const std::string others = failed > 1 ? util::concat(" (", failed - 1, " more reads of this fetch failed)") : "";
  if (r.eof) {
    throw FormatError(util::concat("[fetch_experts] ", file.path, " ended inside expert ", r.expert, " of layer ",
                                   r.layer, " (record at offset ", r.offset, ", ", r.length, " bytes): the file has ",
                                   reader.current_size(r.file), " bytes but the manifest expects ", file.size,
                                   others, "; it was truncated or replaced while in use; copy the model again"));
  }
  throw IoError(util::concat("[fetch_experts] reading expert ", r.expert, " of layer ", r.layer, " from ", file.path,
                             " at offset ", r.offset, " (", r.length, " bytes) failed: ",
                             std::system_category().message(r.error), " (errno ", r.error, ")", others,
                             "; check the disk and the file system"));
}

StoreStats ExpertStore::stats() const {
  StoreStats out = impl_->stats;
  out.slots = impl_->plan.n_slots;
  out.slot_bytes = impl_->plan.slot_bytes;
  out.cache_bytes = impl_->memory.bytes();
  out.io = impl_->reader.mode() == IoMode::direct ? "direct" : "buffered";
  return out;
}

void ExpertStore::reset_stats() { impl_->stats = {}; }

}  // namespace moeflux::experts
