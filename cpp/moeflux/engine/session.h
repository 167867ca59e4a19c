// A session: one sequence's state on top of an engine (KV caches, position), the routing trace of
// everything computed since the last reset, and streaming generation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "moeflux/engine/engine.h"
#include "moeflux/engine/sampler.h"

namespace moeflux::engine {

// Routing of every token since the last reset, [tokens, moe_layers, k] (logits: [.., n_experts]).
struct RoutingTrace {
  std::int64_t n_tokens = 0;
  std::vector<std::int32_t> experts;
  std::vector<float> weights;
  std::vector<float> router_logits;  // only when the session records them
};

struct SessionOptions {
  bool record_router_logits = false;
};

class Session {
 public:
  Session(std::shared_ptr<Engine> engine, const SessionOptions& options);

  // Runs `tokens` after everything seen so far; returns float32 logits [n, vocab] where n is T
  // (all) or 1 (last). Throws ShapeError for an empty input or a token outside the vocabulary;
  // on any error the session is left as it was before the call.
  std::vector<float> forward(std::span<const std::int32_t> tokens, arch::LogitsMode mode);
  void reset();
  // Forgets every position from `n_tokens` on (a chat whose history changed keeps the common
  // prefix). Throws ShapeError past n_past, Unsupported for a state that cannot rewind.
  void truncate(std::int64_t n_tokens);

  std::int64_t n_past() const { return state_->n_past; }
  const std::vector<std::int32_t>& tokens() const { return tokens_; }  // in the KV cache, in order
  const RoutingTrace& routing() const { return trace_; }
  const SessionOptions& options() const { return options_; }
  Engine& engine() { return *engine_; }
  // The sampler's random stream: it runs on across generations unless one gives a seed, and is
  // part of a saved state.
  Rng& rng() { return rng_; }

 private:
  friend void write_state(Session& session, std::ostream& out, const std::string& metadata);
  friend std::string read_state(Session& session, std::span<const std::byte> bytes);
  std::shared_ptr<Engine> engine_;
  SessionOptions options_;
  std::unique_ptr<arch::State> state_;
  std::vector<std::int32_t> tokens_;
  RoutingTrace trace_;
  Rng rng_;
};

struct GenerateOptions {
  int max_new_tokens = 32;
  SamplerOptions sampler;
  std::optional<std::uint64_t> seed;      // reseeds the session's generator; none: it runs on
  std::vector<std::int32_t> stop_tokens;  // generation ends after yielding one of these
};

enum class FinishReason { none, stop_token, length };

// Streaming generation: next() prefills the prompt on its first call, then decodes one token per
// call. The last token returned is not yet in the session's cache (it is fed by the next step).
class Generation {
 public:
  Generation(Session& session, std::vector<std::int32_t> prompt, const GenerateOptions& options);
  std::optional<std::int32_t> next();  // nullopt when finished
  int produced() const { return produced_; }
  FinishReason finish_reason() const { return reason_; }  // none until next() has said it finished

 private:
  Session& session_;
  std::vector<std::int32_t> pending_;  // tokens to feed on the next step
  GenerateOptions options_;
  Sampler sampler_;
  int produced_ = 0;
  bool finished_ = false;
  FinishReason reason_ = FinishReason::none;
};

}  // namespace moeflux::engine
