// The sampler against its definition: greedy is the argmax, seeds repeat, and the frequencies of
// sampled tokens match the softmax of the (filtered, tempered) logits within a chi-square bound.
#include "moeflux/engine/sampler.h"

#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "moeflux/util/error.h"

namespace moeflux::engine {
namespace {

std::vector<int> counts(const SamplerOptions& options, const std::vector<float>& logits, int draws, std::uint64_t seed) {
  Sampler sampler(options);
  Rng rng(seed);
  std::vector<int> c(logits.size(), 0);
  for (int i = 0; i < draws; ++i) ++c[static_cast<std::size_t>(sampler.sample(logits, rng))];
  return c;
}

// Pearson's statistic of `observed` against probabilities `p` (tokens with p = 0 must not occur).
double chi_square(const std::vector<int>& observed, const std::vector<double>& p, int draws) {
  double chi2 = 0.0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0.0) {
      EXPECT_EQ(observed[i], 0) << "token " << i << " was filtered out but sampled";
      continue;
    }
    const double expected = p[i] * draws;
    chi2 += (observed[i] - expected) * (observed[i] - expected) / expected;
  }
  return chi2;
}

std::vector<double> softmax(const std::vector<float>& logits, double temperature, const std::vector<bool>& keep) {
  std::vector<double> p(logits.size(), 0.0);
  double sum = 0.0;
  for (std::size_t i = 0; i < logits.size(); ++i)
    if (keep[i]) sum += p[i] = std::exp(static_cast<double>(logits[i]) / temperature);
  for (double& v : p) v /= sum;
  return p;
}

const std::vector<float> kLogits = {1.0f, 0.5f, -0.3f, 2.0f, 0.0f, -1.0f, 1.5f, 0.2f};
constexpr int kDraws = 200000;
// Upper 0.1% points of the chi-square distribution: a correct sampler fails once in a thousand seeds.
constexpr double kChi2Df7 = 24.32, kChi2Df2 = 13.82, kChi2Df1 = 10.83;

SamplerOptions sampling(float temperature) {
  SamplerOptions o;
  o.do_sample = true;
  o.temperature = temperature;
  return o;
}

TEST(Sampler, GreedyIsTheArgmaxWhateverTheTemperature) {
  SamplerOptions o;
  o.temperature = 5.0f;
  Sampler sampler(o);
  Rng rng;
  EXPECT_EQ(sampler.sample(kLogits, rng), 3);
  EXPECT_EQ(argmax(std::vector<float>{1.0f, 3.0f, 3.0f}), 1);  // ties: the lower id
}

TEST(Sampler, TemperatureFrequenciesMatchTheSoftmax) {
  for (const float t : {0.7f, 1.0f, 1.6f}) {
    const auto c = counts(sampling(t), kLogits, kDraws, 11);
    EXPECT_LT(chi_square(c, softmax(kLogits, t, std::vector<bool>(8, true)), kDraws), kChi2Df7) << "temperature " << t;
  }
}

TEST(Sampler, TopKKeepsTheKLargest) {
  SamplerOptions o = sampling(1.0f);
  o.top_k = 3;  // ids 3, 6, 0
  const auto c = counts(o, kLogits, kDraws, 5);
  const std::vector<bool> keep = {true, false, false, true, false, false, true, false};
  EXPECT_LT(chi_square(c, softmax(kLogits, 1.0, keep), kDraws), kChi2Df2);
}

TEST(Sampler, TopKOfOneIsGreedy) {
  SamplerOptions o = sampling(1.3f);
  o.top_k = 1;
  Sampler sampler(o);
  Rng rng(3);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(sampler.sample(kLogits, rng), 3);
}

TEST(Sampler, TopPKeepsTheSmallestPrefixReachingP) {
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  SamplerOptions o = sampling(1.0f);
  o.top_p = 0.7f;  // 0.5 < 0.7 <= 0.5 + 0.3
  const auto c = counts(o, logits, kDraws, 9);
  EXPECT_LT(chi_square(c, {0.5 / 0.8, 0.3 / 0.8, 0.0, 0.0}, kDraws), kChi2Df1);
}

TEST(Sampler, MinPDropsTokensBelowAFractionOfTheLargest) {
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  SamplerOptions o = sampling(1.0f);
  o.min_p = 0.5f;  // keeps p >= 0.25
  const auto c = counts(o, logits, kDraws, 10);
  EXPECT_LT(chi_square(c, {0.5 / 0.8, 0.3 / 0.8, 0.0, 0.0}, kDraws), kChi2Df1);
}

TEST(Sampler, FixedSeedRepeatsAndOtherSeedsDiffer) {
  const auto a = counts(sampling(1.0f), kLogits, 1000, 42);
  EXPECT_EQ(a, counts(sampling(1.0f), kLogits, 1000, 42));
  EXPECT_NE(a, counts(sampling(1.0f), kLogits, 1000, 43));
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  SamplerOptions o;
  o.repetition_penalty = 2.0f;
  Rng rng;
  {
    Sampler sampler(o);
    const std::vector<std::int32_t> context = {0};
    sampler.observe_context(context);
    EXPECT_EQ(sampler.sample(std::vector<float>{2.0f, 1.9f, -1.0f}, rng), 1);  // 2.0 / 2 < 1.9
  }
  {
    Sampler sampler(o);
    sampler.observe_generated(2);
    EXPECT_EQ(sampler.sample(std::vector<float>{-0.8f, -1.5f, -0.5f}, rng), 0);  // -0.5 * 2 < -0.8
  }
}

TEST(Sampler, PresenceAndFrequencyPenaltiesCountGeneratedTokens) {
  SamplerOptions o;
  o.presence_penalty = 0.3f;
  o.frequency_penalty = 0.2f;
  Sampler sampler(o);
  Rng rng;
  const std::vector<float> logits = {1.0f, 0.5f};
  sampler.observe_context(std::vector<std::int32_t>{0, 0, 0});  // context alone is not penalised
  EXPECT_EQ(sampler.sample(logits, rng), 0);
  sampler.observe_generated(0);
  EXPECT_EQ(sampler.sample(logits, rng), 0);  // 1.0 - 0.3 - 0.2 = 0.5: a tie, the lower id
  sampler.observe_generated(0);
  EXPECT_EQ(sampler.sample(logits, rng), 1);  // 1.0 - 0.3 - 0.4 < 0.5
}

TEST(Rng, SavedStateContinuesTheSameStream) {
  Rng a(7);
  for (int i = 0; i < 10; ++i) a.uniform();
  Rng b;
  b.restore(a.save());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(a.uniform(), b.uniform());
  EXPECT_THROW(b.restore("not a generator"), FormatError);
}

TEST(Sampler, RefusesOptionsOutOfRange) {
  auto make = [](auto change) {
    SamplerOptions o = sampling(1.0f);
    change(o);
    return Sampler(o);
  };
  EXPECT_THROW(make([](SamplerOptions& o) { o.temperature = 0.0f; }), ConfigError);
  EXPECT_THROW(make([](SamplerOptions& o) { o.top_k = -1; }), ConfigError);
  EXPECT_THROW(make([](SamplerOptions& o) { o.top_p = 0.0f; }), ConfigError);
  EXPECT_THROW(make([](SamplerOptions& o) { o.min_p = 1.5f; }), ConfigError);
  EXPECT_THROW(make([](SamplerOptions& o) { o.repetition_penalty = 0.0f; }), ConfigError);
  EXPECT_NO_THROW(make([](SamplerOptions& o) { o.do_sample = false; o.temperature = 0.0f; }));
}

}  // namespace
}  // namespace moeflux::engine
