// The expert store: makes a layer's routed experts readable for the backend. Records are read
// from the per-layer expert files with io_uring and O_DIRECT (or buffered pread) into a host slot
// cache bounded by a byte budget, with LRU eviction per layer. Where the bytes come from never
// changes what is computed.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "moeflux/format/packed_model.h"
#include "moeflux/format/tensor_view.h"

namespace moeflux::experts {

// One expert's blocks (gate_proj, up_proj, down_proj in record order), viewing a cache slot.
struct ExpertRecord {
  std::int32_t expert = 0;
  std::vector<format::TensorView> blocks;
};

enum class IoMode { direct, buffered };

struct StoreOptions {
  // Bytes of host memory for expert slots. 0: room for every expert of the model.
  std::uint64_t cache_bytes = 0;
  IoMode io = IoMode::direct;  // direct falls back to buffered by itself where O_DIRECT is refused
  int experts_per_token = 1;   // k: the budget must hold one layer's k experts
  unsigned queue_depth = 64;   // io_uring requests in flight at most
  // Test hook: called before each read; a non-zero errno fails that read as the OS would.
  std::function<int(int layer, int expert)> fault_injector;
};

struct StoreStats {
  std::uint64_t hits = 0;          // records found in the cache
  std::uint64_t misses = 0;        // records read from disk
  std::uint64_t bytes_read = 0;    // bytes read from disk
  std::uint64_t evictions = 0;
  double read_wait_seconds = 0.0;  // time fetch() waited for reads to complete
  std::uint64_t slots = 0;         // slots in the cache (all pools)
  std::uint64_t slot_bytes = 0;    // bytes of one slot (the largest record stride)
  std::uint64_t cache_bytes = 0;   // bytes reserved for slots
  std::string io;                  // "direct" or "buffered" (after any fallback)

  // Achieved read throughput while fetch() waited for misses, in bytes per second.
  double read_bytes_per_second() const {
    return read_wait_seconds > 0.0 ? static_cast<double>(bytes_read) / read_wait_seconds : 0.0;
  }
};

// Not thread-safe: one call at a time (the engine drives it from one thread).
class ExpertStore {
 public:
  // Throws BudgetError when options.cache_bytes cannot hold one layer's k experts (the message
  // gives the smallest budget that can), IoError / FormatError for unreadable expert files.
  ExpertStore(std::shared_ptr<const format::PackedModel> model, const StoreOptions& options);
  ~ExpertStore();
  ExpertStore(const ExpertStore&) = delete;
  ExpertStore& operator=(const ExpertStore&) = delete;

  // The most experts of `layer` one fetch may hold at once (>= k).
  int capacity(int layer) const;

  // Called by fetch for each record (by its index in `experts`) as soon as its bytes are there,
  // while reads of others may still be in flight; the record is the one fetch returns.
  using RecordReady = std::function<void(std::size_t index, const ExpertRecord& record)>;

  // Records of `experts` (ascending, unique, at most capacity(layer)) of decoder layer `layer`:
  // misses are all read at once. The views stay valid until the next fetch. On a read error, throws
  // IoError naming the file, expert and errno (FormatError when the file ended early); every read
  // has finished by then, and the cache stays consistent and usable. on_ready, when given, gets
  // each record once, hits with the first read to land (at once when there are no misses), misses
  // as their reads land; a failed read is never announced. When on_ready throws, every read is
  // drained, none of this fetch's misses stays cached, and the first exception is rethrown.
  std::vector<ExpertRecord> fetch(int layer, std::span<const std::int32_t> experts,
                                  const RecordReady& on_ready = {});

  // Smallest cache_bytes a model can run with at top-k = k.
  static std::uint64_t min_cache_bytes(const format::PackedModel& model, int k);

  StoreStats stats() const;
  void reset_stats();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace moeflux::experts
