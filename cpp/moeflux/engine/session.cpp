#include "moeflux/engine/session.h"

#include <algorithm>

#include "moeflux/util/error.h"

namespace moeflux::engine {

Session::Session(std::shared_ptr<Engine> engine, const SessionOptions& options)
    : engine_(std::move(engine)), options_(options), state_(engine_->model().new_state()) {}

void Session::reset() {
  state_->reset();
  tokens_.clear();
  trace_ = {};
}

std::vector<float> Session::forward(std::span<const std::int32_t> tokens, arch::LogitsMode mode) {
  const arch::ModelInfo& info = engine_->info();
  MF_CHECK(!tokens.empty(), ShapeError, "[forward] no tokens given; pass at least one token id");
  for (std::size_t i = 0; i < tokens.size(); ++i)
    MF_CHECK(tokens[i] >= 0 && tokens[i] < info.vocab_size, ShapeError, "[forward] token id ", tokens[i],
             " at index ", i, " is outside the vocabulary [0, ", info.vocab_size, ")");

  std::vector<float> logits;
  arch::RoutingRecord routing;
  const std::int64_t n_past = state_->n_past;
  try {
    engine_->model().forward(*state_, tokens, {mode, options_.record_router_logits}, logits, &routing);
  } catch (...) {
    state_->n_past = n_past;  // rows written past n_past are overwritten by the next call
    throw;
  }
  tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
  trace_.n_tokens += static_cast<std::int64_t>(tokens.size());
  trace_.experts.insert(trace_.experts.end(), routing.experts.begin(), routing.experts.end());
  trace_.weights.insert(trace_.weights.end(), routing.weights.begin(), routing.weights.end());
  trace_.router_logits.insert(trace_.router_logits.end(), routing.router_logits.begin(), routing.router_logits.end());
  return logits;
}

void Session::truncate(std::int64_t n_tokens) {
  MF_CHECK(n_tokens >= 0 && n_tokens <= n_past(), ShapeError, "[truncate] cannot keep ", n_tokens,
           " tokens of a session that holds ", n_past());
  if (n_tokens == n_past()) return;
  MF_CHECK(state_->can_rewind(), Unsupported, "[truncate] the state of model_type \"", engine_->info().model_type,
           "\" cannot forget positions; reset() and run the prompt again");
  const arch::ModelInfo& info = engine_->info();
  const auto rows = static_cast<std::size_t>(n_tokens) * info.moe_layers.size();
  state_->n_past = n_tokens;
  tokens_.resize(static_cast<std::size_t>(n_tokens));
  trace_.n_tokens = n_tokens;
  trace_.experts.resize(rows * static_cast<std::size_t>(info.experts_per_token));
  trace_.weights.resize(rows * static_cast<std::size_t>(info.experts_per_token));
  if (!trace_.router_logits.empty()) trace_.router_logits.resize(rows * static_cast<std::size_t>(info.n_experts));
}

Generation::Generation(Session& session, std::vector<std::int32_t> prompt, const GenerateOptions& options)
    : session_(session), pending_(std::move(prompt)), options_(options), sampler_(options.sampler) {
  MF_CHECK(options.max_new_tokens >= 0, ConfigError, "[generate] max_new_tokens must be >= 0, not ",
           options.max_new_tokens);
  MF_CHECK(!pending_.empty() || session.n_past() > 0, ShapeError,
           "[generate] the prompt is empty and the session holds no tokens; give at least one token");
  if (options.seed) session.rng().seed(*options.seed);
  sampler_.observe_context(session.tokens());
  sampler_.observe_context(pending_);
}

std::optional<std::int32_t> Generation::next() {
  if (finished_ || produced_ >= options_.max_new_tokens) {
    if (!finished_) reason_ = FinishReason::length;
    finished_ = true;
    return std::nullopt;
  }
  MF_CHECK(!pending_.empty(), ShapeError, "[generate] nothing to continue from: the prompt was empty");
  const std::vector<float> logits = session_.forward(pending_, arch::LogitsMode::last);
  const std::int32_t token = sampler_.sample(logits, session_.rng());
  sampler_.observe_generated(token);
  pending_.assign(1, token);
  ++produced_;
  const auto& stops = options_.stop_tokens;
  if (std::find(stops.begin(), stops.end(), token) != stops.end()) {
    finished_ = true;
    reason_ = FinishReason::stop_token;
  }
  return token;
}

}  // namespace moeflux::engine
