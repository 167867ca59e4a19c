#include "moeflux/engine/engine.h"

#include "moeflux/arch/registry.h"
#include "moeflux/util/error.h"

namespace moeflux::engine {

Engine::Engine(const std::string& path, const EngineOptions& options) : backend_name_(options.backend) {
  try {
    packed_ = format::PackedModel::open(path);
    const arch::Architecture& architecture = arch::find_architecture(packed_->config());
    backend_ = backend::create_backend({options.backend, options.threads});
    store_ = std::make_unique<experts::ExpertStore>(packed_, experts::StoreOptions{});
    arch::ModelContext context{packed_, backend_.get(), store_.get(), {options.experts_per_token}};
    model_ = architecture.create(context);
  } catch (const Error& e) {
    e.rethrow_with("opening the model at " + path);
  }
}

}  // namespace moeflux::engine
