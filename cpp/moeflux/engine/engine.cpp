#include "moeflux/engine/engine.h"

#include <algorithm>
#include <numeric>

#include "moeflux/arch/registry.h"
#include "moeflux/util/error.h"

namespace moeflux::engine {

Engine::Engine(const std::string& path, const EngineOptions& options) : backend_name_(options.backend) {
  try {
    packed_ = format::PackedModel::open(path);
    const arch::Architecture& architecture = arch::find_architecture(packed_->config());
    backend_ = backend::create_backend({options.backend, options.threads, options.device});
    const int k = options.experts_per_token.value_or(arch::experts_per_token(packed_->config()));
    plan_ = plan_host(packed_->manifest(), k, options.cache_bytes, dense_bytes(), host_memory_available());
    experts::StoreOptions store;
    store.cache_bytes = plan_.host_cache_bytes;
    store.io = options.io;
    store.experts_per_token = k;
    store.fault_injector = options.read_fault;
    try {
      store_ = std::make_unique<experts::ExpertStore>(packed_, store);
    } catch (const BudgetError& e) {
      throw BudgetError(util::concat(e.what(), "; the dense weights need another ", dense_bytes(),
                                     " bytes, resident outside this budget"));
    }
    arch::ModelContext context{packed_, backend_.get(), store_.get(), {options.experts_per_token}};
    model_ = architecture.create(context);
    // The device tier last: its plan sees the dense weights already resident.
    const backend::ExpertCacheLayout layout = expert_layout(packed_->manifest(), k);
    plan_device(plan_, k, options.device_cache_bytes, backend_->expert_slot_bytes(layout), backend_->memory_info());
    if (plan_.device_slot_bytes > 0) backend_->configure_expert_cache(layout, plan_.device_cache_bytes);
    if (options.preload_experts && backend_->expert_cache_holds_all()) preload_experts(layout);
  } catch (const Error& e) {
    e.rethrow_with("opening the model at " + path);
  }
}

void Engine::preload_experts(const backend::ExpertCacheLayout& layout) {
  std::vector<std::int32_t> batch;
  std::vector<backend::ExpertWeights> weights;
  for (const auto& l : layout.layers) {
    const int step = store_->capacity(l.layer);
    for (int first = 0; first < l.n_experts; first += step) {
      batch.resize(static_cast<std::size_t>(std::min(step, l.n_experts - first)));
      std::iota(batch.begin(), batch.end(), first);
      weights.clear();
      for (const experts::ExpertRecord& r : store_->fetch(l.layer, batch))
        weights.push_back({r.blocks.at(0), r.blocks.at(1), r.blocks.at(2), l.layer, r.expert});
      backend_->load_experts(weights);
    }
  }
}

std::uint64_t Engine::dense_bytes() const {
  std::uint64_t total = 0;
  for (const auto& entry : packed_->manifest().dense) total += entry.nbytes;
  return total;
}

}  // namespace moeflux::engine
