// Choosing the next token from logits as transformers' generate does: the penalties, then greedy,
// or temperature -> top-k -> top-p -> min-p and a draw from a seeded generator whose state can be
// saved, so that runs (and resumed runs) repeat exactly.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace moeflux::engine {

struct SamplerOptions {
  bool do_sample = false;           // false: greedy (the argmax after the penalties)
  float temperature = 1.0f;         // > 0 when sampling
  int top_k = 0;                    // 0: no limit
  float top_p = 1.0f;               // 1: no limit
  float min_p = 0.0f;               // 0: no limit; keeps tokens with p >= min_p * max p
  float repetition_penalty = 1.0f;  // transformers' rule on every token of the context: l > 0 ? l / r : l * r
  float presence_penalty = 0.0f;    // subtracted once from each token generated so far (OpenAI's rule)
  float frequency_penalty = 0.0f;   // subtracted once per occurrence among the generated tokens
};

// The random stream: a 64-bit Mersenne Twister. Uniform doubles are made from its top 53 bits by
// hand, not by std::uniform_real_distribution, whose algorithm differs between standard libraries.
class Rng {
 public:
  explicit Rng(std::uint64_t seed = 0) : engine_(seed) {}
  void seed(std::uint64_t seed) { engine_.seed(seed); }
  double uniform();  // in [0, 1)
  std::string save() const;            // the whole generator state as text
  void restore(const std::string& state);  // throws FormatError for text save() did not write

 private:
  std::mt19937_64 engine_;
};

class Sampler {
 public:
  explicit Sampler(const SamplerOptions& options);  // throws ConfigError for out-of-range options

  // Tokens already in the context (the prompt and the session before it): repetition penalty only.
  void observe_context(std::span<const std::int32_t> tokens);
  // A token this generation produced: every penalty.
  void observe_generated(std::int32_t token);

  std::int32_t sample(std::span<const float> logits, Rng& rng);
  const SamplerOptions& options() const { return options_; }

 private:
  bool penalised() const;
  SamplerOptions options_;
  std::unordered_set<std::int32_t> context_;             // every token seen (repetition penalty)
  std::unordered_map<std::int32_t, int> generated_;      // generated token -> count
};

// Index of the largest logit (the lowest index among equals).
std::int32_t argmax(std::span<const float> logits);

}  // namespace moeflux::engine
