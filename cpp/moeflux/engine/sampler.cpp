#include "moeflux/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "moeflux/util/error.h"

namespace moeflux::engine {

std::int32_t argmax(std::span<const float> logits) {
  MF_ASSERT(!logits.empty(), "argmax of nothing");
  return static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

Sampler::Sampler(const SamplerOptions& options) : options_(options), rng_(options.seed) {
  MF_CHECK(options.temperature >= 0.0f && std::isfinite(options.temperature), ConfigError,
           "[sample] temperature must be >= 0 (0 is greedy), not ", options.temperature);
  MF_CHECK(options.top_k >= 0, ConfigError, "[sample] top_k must be >= 0 (0 disables it), not ", options.top_k);
  MF_CHECK(options.top_p > 0.0f && options.top_p <= 1.0f, ConfigError,
           "[sample] top_p must be in (0, 1], not ", options.top_p);
}

std::int32_t Sampler::sample(std::span<const float> logits) {
  if (options_.temperature == 0.0f) return argmax(logits);
  const auto n = static_cast<std::int32_t>(logits.size());
  std::vector<std::int32_t> ids(static_cast<std::size_t>(n));
  std::iota(ids.begin(), ids.end(), 0);
  // Candidates in descending logit order (ties: lower id first), cut to top_k.
  const std::int32_t keep = options_.top_k > 0 ? std::min(options_.top_k, n) : n;
  auto by_logit = [&](std::int32_t a, std::int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  std::partial_sort(ids.begin(), ids.begin() + keep, ids.end(), by_logit);
  ids.resize(static_cast<std::size_t>(keep));

  std::vector<double> probs(ids.size());
  const double max = logits[ids[0]];
  double sum = 0.0;
  for (std::size_t i = 0; i < ids.size(); ++i)
    sum += probs[i] = std::exp((static_cast<double>(logits[ids[i]]) - max) / static_cast<double>(options_.temperature));
  // top-p: the smallest prefix whose probability reaches top_p.
  std::size_t cut = probs.size();
  if (options_.top_p < 1.0f) {
    double acc = 0.0;
    for (std::size_t i = 0; i < probs.size(); ++i) {
      acc += probs[i] / sum;
      if (acc >= static_cast<double>(options_.top_p)) {
        cut = i + 1;
        break;
      }
    }
  }
  const double total = std::accumulate(probs.begin(), probs.begin() + static_cast<std::ptrdiff_t>(cut), 0.0);
  double u = std::uniform_real_distribution<double>(0.0, total)(rng_);
  for (std::size_t i = 0; i < cut; ++i) {
    u -= probs[i];
    if (u < 0.0) return ids[i];
  }
  return ids[cut - 1];
}

}  // namespace moeflux::engine
