// The defaults of the State and Model interfaces (model.h): families without state saving refuse clearly.
#include "moeflux/arch/model.h"

#include "moeflux/util/error.h"

namespace moeflux::arch {

std::vector<StateTensor> State::tensors() {
  throw Unsupported("[save_state] this model family cannot save or load its state yet");
}

void Model::reserve_state(State& /*state*/, std::int64_t /*n_past*/) {
  throw Unsupported(util::concat("[load_state] model_type \"", info().model_type,
                                 "\" cannot load a saved state yet"));
}

}  // namespace moeflux::arch
