// Choosing the next token from logits: greedy, or temperature with top-k / top-p filtering, from a
// seeded generator so that runs repeat exactly.
#pragma once

#include <cstdint>
#include <random>
#include <span>

namespace moeflux::engine {

struct SamplerOptions {
  float temperature = 0.0f;  // 0: greedy
  int top_k = 0;             // 0: no limit
  float top_p = 1.0f;        // 1: no limit
  std::uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplerOptions& options);  // throws ConfigError for out-of-range options
  std::int32_t sample(std::span<const float> logits);

 private:
  SamplerOptions options_;
  std::mt19937_64 rng_;
};

// Index of the largest logit (the lowest index among equals).
std::int32_t argmax(std::span<const float> logits);

}  // namespace moeflux::engine
