#include "moeflux/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>
#include <vector>

#include "moeflux/util/error.h"

namespace moeflux::engine {

std::int32_t argmax(std::span<const float> logits) {
  MF_ASSERT(!logits.empty(), "argmax of nothing");
  return static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

double Rng::uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

std::string Rng::save() const {
  std::ostringstream out;
  out << engine_;
  return out.str();
}

void Rng::restore(const std::string& state) {
  std::istringstream in(state);
  std::mt19937_64 engine;
  in >> engine;
  MF_CHECK(!in.fail(), FormatError, "[load_state] the sampler's generator state is damaged; save the state again");
  engine_ = engine;
}

Sampler::Sampler(const SamplerOptions& options) : options_(options) {
  const SamplerOptions& o = options;
  MF_CHECK(std::isfinite(o.temperature) && (o.temperature > 0.0f || !o.do_sample), ConfigError,
           "[sample] temperature must be > 0 when sampling (do_sample=False is greedy), not ", o.temperature);
  MF_CHECK(o.top_k >= 0, ConfigError, "[sample] top_k must be >= 0 (0 disables it), not ", o.top_k);
  MF_CHECK(o.top_p > 0.0f && o.top_p <= 1.0f, ConfigError, "[sample] top_p must be in (0, 1], not ", o.top_p);
  MF_CHECK(o.min_p >= 0.0f && o.min_p <= 1.0f, ConfigError, "[sample] min_p must be in [0, 1], not ", o.min_p);
  MF_CHECK(o.repetition_penalty > 0.0f && std::isfinite(o.repetition_penalty), ConfigError,
           "[sample] repetition_penalty must be > 0 (1 disables it), not ", o.repetition_penalty);
  MF_CHECK(std::isfinite(o.presence_penalty) && std::isfinite(o.frequency_penalty), ConfigError,
           "[sample] presence_penalty and frequency_penalty must be finite");
}

bool Sampler::penalised() const {
  return options_.repetition_penalty != 1.0f || options_.presence_penalty != 0.0f ||
         options_.frequency_penalty != 0.0f;
}

void Sampler::observe_context(std::span<const std::int32_t> tokens) {
  if (options_.repetition_penalty != 1.0f) context_.insert(tokens.begin(), tokens.end());
}

void Sampler::observe_generated(std::int32_t token) {
  if (options_.repetition_penalty != 1.0f) context_.insert(token);
  ++generated_[token];
}

std::int32_t Sampler::sample(std::span<const float> raw, Rng& rng) {
  const auto n = static_cast<std::int32_t>(raw.size());
  std::vector<float> penalised_logits;
  std::span<const float> logits = raw;
  if (penalised()) {
    penalised_logits.assign(raw.begin(), raw.end());
    const float r = options_.repetition_penalty;
    for (const std::int32_t t : context_)
      if (t >= 0 && t < n) penalised_logits[t] = penalised_logits[t] > 0.0f ? penalised_logits[t] / r : penalised_logits[t] * r;
    for (const auto& [t, count] : generated_)
      if (t >= 0 && t < n)
        penalised_logits[t] -= options_.presence_penalty + options_.frequency_penalty * static_cast<float>(count);
    logits = penalised_logits;
  }
  if (!options_.do_sample) return argmax(logits);

  // Candidates: every id, or the top_k (or all, for top-p) in descending logit order, ties to the lower id.
  std::vector<std::int32_t> ids(static_cast<std::size_t>(n));
  std::iota(ids.begin(), ids.end(), 0);
  const bool sorted = options_.top_k > 0 || options_.top_p < 1.0f;
  if (sorted) {
    const std::int32_t keep = options_.top_k > 0 ? std::min(options_.top_k, n) : n;
    auto by_logit = [&](std::int32_t a, std::int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    std::partial_sort(ids.begin(), ids.begin() + keep, ids.end(), by_logit);
    ids.resize(static_cast<std::size_t>(keep));
  }
  // Probabilities relative to the largest (exp((l - max) / T)), in double.
  const double inv_t = 1.0 / static_cast<double>(options_.temperature);
  double max = -INFINITY;
  for (const std::int32_t id : ids) max = std::max(max, static_cast<double>(logits[id]));
  std::vector<double> probs(ids.size());
  double sum = 0.0;
  for (std::size_t i = 0; i < ids.size(); ++i) sum += probs[i] = std::exp((static_cast<double>(logits[ids[i]]) - max) * inv_t);

  std::size_t cut = probs.size();
  if (options_.top_p < 1.0f) {  // the smallest prefix whose probability reaches top_p
    double acc = 0.0;
    for (std::size_t i = 0; i < probs.size(); ++i) {
      acc += probs[i] / sum;
      if (acc >= static_cast<double>(options_.top_p)) {
        cut = i + 1;
        break;
      }
    }
  }
  if (options_.min_p > 0.0f)  // probs[i] is already p_i / p_max
    for (std::size_t i = 0; i < cut; ++i)
      if (probs[i] < static_cast<double>(options_.min_p)) probs[i] = 0.0;

  const double total = std::accumulate(probs.begin(), probs.begin() + static_cast<std::ptrdiff_t>(cut), 0.0);
  double u = rng.uniform() * total;
  std::size_t last_nonzero = 0;
  for (std::size_t i = 0; i < cut; ++i) {
    if (probs[i] <= 0.0) continue;
    last_nonzero = i;
    u -= probs[i];
    if (u < 0.0) return ids[i];
  }
  return ids[last_nonzero];  // rounding left u at the very top
}

}  // namespace moeflux::engine
