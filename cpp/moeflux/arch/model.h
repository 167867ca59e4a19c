// The interface of one model family's forward pass, and what it reports: logits and the routing
// (expert ids and weights [T, moe_layers, k], optionally raw router logits [T, moe_layers, E]).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "moeflux/backend/backend.h"
#include "moeflux/experts/expert_store.h"
#include "moeflux/format/packed_model.h"

namespace moeflux::arch {

struct ModelInfo {
  std::string model_type;
  int n_layers = 0;
  int hidden_size = 0;
  int vocab_size = 0;
  int n_experts = 0;
  int experts_per_token = 0;          // k used for routing (the model's own unless overridden)
  std::vector<int> moe_layers;        // decoder layer index of each MoE layer, ascending
  std::int64_t max_position = 0;      // max_position_embeddings
};

// One named tensor of a state, for saving and loading it (engine/state_file.cpp): a float32 view
// of exactly the elements that matter at n_past (a KV cache's first n_past rows; a recurrent or
// convolution state whole). Names are stable across runs ("layers.3.k").
struct StateTensor {
  std::string name;
  backend::Tensor tensor;
};

// Everything a session keeps between calls (KV caches, recurrent states, the position).
// Saving and loading go through tensors(): a family lists every tensor its forward pass reads
// back, in a fixed order; loading first calls Model::reserve_state(state, n_past), sets n_past,
// then uploads into the same list. The defaults refuse, so a family without them says so.
class State {
 public:
  virtual ~State() = default;
  virtual void reset() = 0;
  virtual std::vector<StateTensor> tensors();
  // Whether lowering n_past forgets the last positions exactly (true for KV caches; false where a
  // recurrent state has already folded them in, as in gated delta net layers).
  virtual bool can_rewind() const { return true; }
  std::int64_t n_past = 0;  // tokens already processed
};

// Routing of one forward call, [T, moe_layers, k] row-major (and [T, moe_layers, E] for logits).
struct RoutingRecord {
  std::vector<std::int32_t> experts;
  std::vector<float> weights;
  std::vector<float> router_logits;  // filled only when ForwardOptions::record_router_logits
};

enum class LogitsMode { all, last, none };

struct ForwardOptions {
  LogitsMode logits = LogitsMode::all;
  bool record_router_logits = false;
};

struct ModelOptions {
  std::optional<int> experts_per_token;  // overrides the model's top-k (experiments only)
};

// What a model family needs from the engine to build itself.
struct ModelContext {
  std::shared_ptr<const format::PackedModel> packed;
  backend::Backend* backend = nullptr;
  experts::ExpertStore* store = nullptr;
  ModelOptions options;
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelInfo& info() const = 0;
  virtual std::unique_ptr<State> new_state() const = 0;
  // Runs `tokens` at positions state.n_past.. and advances the state. `logits` receives
  // [T, vocab] (all), [1, vocab] (last) or nothing; `routing` (if given) receives this call's routing.
  virtual void forward(State& state, std::span<const std::int32_t> tokens, const ForwardOptions& options,
                       std::vector<float>& logits, RoutingRecord* routing) = 0;
  // Allocates what `state` needs to hold n_past positions, so that its tensors() cover them
  // (loading a saved state). The default refuses (Unsupported).
  virtual void reserve_state(State& state, std::int64_t n_past);
};

}  // namespace moeflux::arch
