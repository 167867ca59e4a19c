// attention_with_inputs on Vulkan against the CPU's op-by-op default (attention_inputs, then
// attention): a decode row whose keys attention_decode walks takes one dispatch
// (attention_decode_step: q and the new key normalised and rotated in the workgroups, the new key
// and value written into the caches, the chunks merged by each KV head's last workgroup); other
// calls take the two ops. Norms of every dtype (plain, zero-centered) or none, full and partial
// rotary, GQA 1 to 8, D 32 to 128, sliding windows, rows off vec4 alignment (the two ops), calls
// in a row (the counters of finished chunks go back to 0). Cache rows no query may see are NaN,
// and the caches are compared whole: only the new row may change. With an input scale (a folded
// norm: q, k and v times 1 / rms(x)), the step adds x's squares in its workgroups, and the two
// ops' path runs rms_scale first.
#include <array>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "moeflux/util/error.h"
#include "vulkan_harness.h"

namespace moeflux::test {
namespace {

// The output sums p_j v_j with |v| <= 1: q's norm and rotation round as attention_inputs' do
// within ~1e-7, which moves scores of a few units by ~1e-6 at most.
constexpr double kRtol = 2e-5;

struct StepCase {
  std::int64_t nh, nkv, D, n_past, window;
  int rotary_dim;
  int norm_kind;  // 0 none, 1 w, 2 (1 + w)
};

std::string case_name(const StepCase& c) {
  return util::concat("nh=", c.nh, " nkv=", c.nkv, " D=", c.D, " n_past=", c.n_past, " window=", c.window,
                      " rotary=", c.rotary_dim, " norm=", c.norm_kind);
}

backend::RopeOptions rope_for(int rotary_dim) {
  backend::RopeOptions rope{.rotary_dim = rotary_dim, .inv_freq = {}, .attention_scaling = 1.0f};
  for (int j = 0; j < rotary_dim / 2; ++j)
    rope.inv_freq.push_back(std::pow(1.0e6f, -2.0f * static_cast<float>(j) / static_cast<float>(rotary_dim)));
  return rope;
}

// One layer's inputs: q, k, v as projected, the caches (NaN outside the keys the row sees and at
// the new row) and the norm weights.
struct StepInputs {
  StepInputs(const StepCase& c, format::Dtype dtype, unsigned seed)
      : q(random_values(static_cast<std::size_t>(c.nh * c.D), seed, -3.0f, 3.0f)),
        k(random_values(static_cast<std::size_t>(c.nkv * c.D), seed + 1, -3.0f, 3.0f)),
        v(random_values(static_cast<std::size_t>(c.nkv * c.D), seed + 2)),
        k_cache(cache(c, seed + 3)),
        v_cache(cache(c, seed + 4)),
        q_norm(dtype, {c.D}, random_values(static_cast<std::size_t>(c.D), seed + 5, -1.5f, 1.5f)),
        k_norm(dtype, {c.D}, random_values(static_cast<std::size_t>(c.D), seed + 6, -1.5f, 1.5f)) {}

  static std::int64_t capacity(const StepCase& c) { return c.n_past + 5; }
  static std::vector<float> cache(const StepCase& c, unsigned seed) {
    const std::int64_t row = c.nkv * c.D;
    std::vector<float> values = random_values(static_cast<std::size_t>(capacity(c) * row), seed);
    const std::int64_t first = c.window > 0 ? std::max<std::int64_t>(0, c.n_past - c.window + 1) : 0;
    for (std::int64_t r = 0; r < capacity(c); ++r) {
      if (r < first || r >= c.n_past)
        std::fill_n(values.begin() + r * row, row, std::numeric_limits<float>::quiet_NaN());
    }
    return values;
  }

  std::vector<float> q, k, v, k_cache, v_cache;
  StoredWeight q_norm, k_norm;
};

struct StepResult {
  std::vector<float> out, k_cache, v_cache;
};

// The inputs in a backend's tensors (no guards), and the output.
struct StepTensors {
  StepTensors(Backend& b, const StepCase& c, const StepInputs& in)
      : q(b.empty({1, c.nh, c.D})),
        k(b.empty({1, c.nkv, c.D})),
        v(b.empty({1, c.nkv * c.D})),
        k_cache(b.empty({StepInputs::capacity(c), c.nkv * c.D})),
        v_cache(b.empty({StepInputs::capacity(c), c.nkv * c.D})),
        out(b.empty({1, c.nh, c.D})),
        q_norm(b.resident(in.q_norm.view())),
        k_norm(b.resident(in.k_norm.view())) {
    b.upload(in.q, q);
    b.upload(in.k, k);
    b.upload(in.v, v);
    b.upload(in.k_cache, k_cache);
    b.upload(in.v_cache, v_cache);
  }
  Tensor q, k, v, k_cache, v_cache, out, q_norm, k_norm;
};

// Runs the step on `b` with tensors `guard` floats into their buffers (36: vec4-aligned rows),
// scaled by 1 / rms(x) where x is given.
StepResult run_step(Backend& b, const StepCase& c, const StepInputs& in, std::int64_t guard,
                    const std::vector<float>* x = nullptr) {
  const std::int64_t capacity = StepInputs::capacity(c);
  Guarded qt(b, {1, c.nh, c.D}, in.q, guard), kt(b, {1, c.nkv, c.D}, in.k, guard);
  Guarded vt(b, {1, c.nkv * c.D}, in.v, guard), out(b, {1, c.nh, c.D}, guard);
  Guarded kc(b, {capacity, c.nkv * c.D}, in.k_cache, guard), vc(b, {capacity, c.nkv * c.D}, in.v_cache, guard);
  const Tensor qn = c.norm_kind ? b.resident(in.q_norm.view()) : Tensor();
  const Tensor kn = c.norm_kind ? b.resident(in.k_norm.view()) : Tensor();
  const backend::NormOptions norm{.eps = 1e-6f, .zero_centered = c.norm_kind == 2};
  const backend::AttentionOptions options{.scale = 1.0f / std::sqrt(static_cast<float>(c.D)), .n_past = c.n_past,
                                          .sliding_window = c.window};
  const std::vector<std::int32_t> positions = {static_cast<std::int32_t>(c.n_past + 3)};  // not the row
  Tensor q3 = qt.tensor(), k3 = kt.tensor(), kct = kc.tensor(), vct = vc.tensor();
  std::optional<Guarded> xt;
  std::optional<backend::InputScale> scale;
  if (x != nullptr) {
    xt.emplace(b, Shape{1, static_cast<std::int64_t>(x->size())}, *x, guard);
    scale = backend::InputScale{xt->tensor(), 1e-6f};
  }
  b.attention_with_inputs(q3, k3, vt.tensor(), qn, kn, norm, positions, rope_for(c.rotary_dim), kct, vct, options,
                          out.tensor(), scale ? &*scale : nullptr);
  out.expect_guards_intact("out");
  kc.expect_guards_intact("k cache");
  vc.expect_guards_intact("v cache");
  return {out.values(), kc.values(), vc.values()};
}

// Every cache row but the new one keeps its bits (NaN included); the new key is normalised
// (|x| / rms <= sqrt(D)) and scaled by |w| <= 2.5 before its rotation.
void expect_caches_match(const StepCase& c, const std::vector<float>& got, const std::vector<float>& want,
                         bool rounded, const std::string& what) {
  const std::size_t row = static_cast<std::size_t>(c.nkv * c.D), at = static_cast<std::size_t>(c.n_past) * row;
  const std::span<const float> g(got), w(want);
  expect_same_bits(g.first(at), w.first(at), what + " before the new row");
  expect_same_bits(g.subspan(at + row), w.subspan(at + row), what + " after the new row");
  if (rounded) expect_near_cpu(g.subspan(at, row), w.subspan(at, row), std::vector<double>(row, 32.0), kRtol, what);
  else expect_same_bits(g.subspan(at, row), w.subspan(at, row), what);
}

// `v_scaled`: v went through 1 / rms(x), which the two sides sum in different orders.
void expect_step_matches(const StepCase& c, const StepResult& got, const StepResult& want, const std::string& what,
                         bool v_scaled = false) {
  SCOPED_TRACE(what);
  const double v_scale = v_scaled ? 4.0 : 1.0;  // |v| <= 1 times 1 / rms(x) of x in [-1, 1]: below 4
  expect_near_cpu(got.out, want.out, std::vector<double>(want.out.size(), v_scale), kRtol, "out");
  expect_caches_match(c, got.k_cache, want.k_cache, true, "k cache");
  expect_caches_match(c, got.v_cache, want.v_cache, v_scaled, "v cache");
}

const StepCase kCases[] = {
    {32, 4, 128, 600, 0, 128, 1},  // Qwen3-30B-A3B's heads at a benchmark context: 22-key chunks
    {32, 4, 128, 90, 0, 128, 2},   // just past attention_split's two blocks
    {8, 8, 64, 150, 0, 32, 1},     // no GQA, partial rotary
    {16, 2, 128, 300, 140, 64, 0},  // a sliding window, no norms
    {12, 3, 32, 400, 0, 32, 2},    // small heads: many chunks
    {32, 4, 128, 1200, 0, 128, 1},  // 55 chunks: the merge loads o in two rounds
    {32, 4, 128, 2000, 0, 128, 1},  // past 64 chunks: the two ops (attention_split)
    {32, 4, 128, 40, 0, 128, 1},   // a single chunk: the two ops
};

class VulkanAttentionStep : public VulkanParamTest<OpCase> {};

TEST_P(VulkanAttentionStep, MatchesTheOpByOpDefault) {
  unsigned seed = 800;
  for (const StepCase& c : kCases) {
    for (const std::int64_t guard : {std::int64_t{36}, std::int64_t{37}}) {
      const StepInputs in(c, GetParam().dtype, seed += 10);
      expect_step_matches(c, run_step(*gpu_, c, in, guard), run_step(*cpu_, c, in, guard),
                          util::concat(case_name(c), " guard=", guard));
    }
  }
  expect_no_validation_messages(*gpu_);
}

// q, k and v projected from a folded norm: x's 1 / rms scales them first, in the step's workgroups
// or (the two ops' calls, and x of a length off vec4s) through rms_scale.
TEST_P(VulkanAttentionStep, ScalesItsInputsByAFoldedNorm) {
  unsigned seed = 1800;
  for (const StepCase& c : kCases) {
    for (const std::int64_t H : {std::int64_t{2048}, std::int64_t{98}}) {
      const StepInputs in(c, GetParam().dtype, seed += 10);
      const std::vector<float> x = random_values(static_cast<std::size_t>(H), seed + 7);
      expect_step_matches(c, run_step(*gpu_, c, in, 36, &x), run_step(*cpu_, c, in, 36, &x),
                          util::concat(case_name(c), " H=", H), true);
    }
  }
  expect_no_validation_messages(*gpu_);
}

INSTANTIATE_TEST_SUITE_P(Cases, VulkanAttentionStep,
                         ::testing::ValuesIn(op_cases({format::Dtype::f32, format::Dtype::bf16, format::Dtype::f16})),
                         op_case_name);

double commands(const std::map<std::string, double>& stats, const std::string& kernel) {
  const auto it = stats.find("gpu_commands." + kernel);
  return it == stats.end() ? 0.0 : it->second;
}

// Where it fits, the step is one dispatch of attention_decode_step; otherwise attention_inputs and
// attention's own dispatches: past its context, and on a device that binds fewer storage buffers
// per shader than the step's 11.
TEST(VulkanAttentionStepDispatches, OneDispatchWhereItFits) {
  auto gpu = make_vulkan({.name = "profiled", .profile = true});
  auto few_buffers = make_vulkan({.name = "profiled, 8 buffers", .profile = true, .max_storage_buffers = 8});
  struct Expected {
    StepCase c;
    double dispatches;
    double steps;  // attention_decode_step commands
    bool few_buffers = false;
  };
  const Expected cases[] = {{{32, 4, 128, 600, 0, 128, 1}, 1, 1},
                            {{32, 4, 128, 40, 0, 128, 1}, 2, 0},     // attention_inputs, a single chunk
                            {{32, 4, 128, 2000, 0, 128, 1}, 3, 0},   // + attention_split and its combine
                            {{8, 8, 64, 150, 0, 32, 0}, 1, 1},       // partial rotary, no norms
                            {{32, 4, 128, 600, 0, 128, 1}, 3, 0, true}};  // + attention_decode and its combine
  unsigned seed = 900;
  for (const Expected& e : cases) {
    SCOPED_TRACE(util::concat(case_name(e.c), e.few_buffers ? " (8 storage buffers)" : ""));
    backend::vk::VulkanBackend& b = e.few_buffers ? *few_buffers : *gpu;
    const StepInputs in(e.c, format::Dtype::f32, seed += 10);
    StepTensors t(b, e.c, in);
    const std::vector<std::int32_t> positions = {static_cast<std::int32_t>(e.c.n_past)};
    b.finish();
    const auto before = b.stats();
    b.attention_with_inputs(t.q, t.k, t.v, t.q_norm, t.k_norm, {.eps = 1e-6f}, positions, rope_for(e.c.rotary_dim),
                            t.k_cache, t.v_cache, {.scale = 0.1f, .n_past = e.c.n_past}, t.out);
    b.finish();
    const auto after = b.stats();
    EXPECT_EQ(after.at("vk_dispatches") - before.at("vk_dispatches"), e.dispatches);
    EXPECT_EQ(commands(after, "attention_decode_step") - commands(before, "attention_decode_step"), e.steps);
  }
  expect_no_validation_messages(*gpu);
  expect_no_validation_messages(*few_buffers);
}

// An input scale costs the step no dispatch; the two ops' path gets rms_scale's three.
TEST(VulkanAttentionStepDispatches, AnInputScaleAddsNoDispatchToTheStep) {
  auto gpu = make_vulkan({.name = "profiled", .profile = true});
  const std::pair<StepCase, double> cases[] = {{{32, 4, 128, 600, 0, 128, 1}, 1}, {{32, 4, 128, 40, 0, 128, 1}, 5}};
  for (const auto& [c, dispatches] : cases) {
    SCOPED_TRACE(case_name(c));
    const StepInputs in(c, format::Dtype::f32, 990);
    StepTensors t(*gpu, c, in);
    Tensor x = gpu->empty({1, 2048});
    gpu->upload(random_values(2048, 991), x);
    const backend::InputScale scale{x, 1e-6f};
    const std::vector<std::int32_t> positions = {static_cast<std::int32_t>(c.n_past)};
    gpu->finish();
    const auto before = gpu->stats();
    gpu->attention_with_inputs(t.q, t.k, t.v, t.q_norm, t.k_norm, {.eps = 1e-6f}, positions, rope_for(c.rotary_dim),
                               t.k_cache, t.v_cache, {.scale = 0.1f, .n_past = c.n_past}, t.out, &scale);
    gpu->finish();
    const auto after = gpu->stats();
    EXPECT_EQ(after.at("vk_dispatches") - before.at("vk_dispatches"), dispatches);
    EXPECT_EQ(commands(after, "rms_scale") - commands(before, "rms_scale"), dispatches == 1 ? 0 : 3);
  }
  expect_no_validation_messages(*gpu);
}

// Layers in a row, recorded back to back with no sync in between (each step's last workgroups set
// their counters back to 0 for the next), then read: every layer as the CPU computes it.
TEST_P(VulkanAttentionStep, LayersInARow) {
  const StepCase c{32, 4, 128, 300, 0, 128, 1};
  const std::int64_t layers = 3;
  const backend::NormOptions norm{.eps = 1e-6f};
  const backend::AttentionOptions options{.scale = 0.088f, .n_past = c.n_past};
  const std::vector<std::int32_t> positions = {static_cast<std::int32_t>(c.n_past)};
  std::vector<StepInputs> inputs;
  for (std::int64_t l = 0; l < layers; ++l) inputs.emplace_back(c, GetParam().dtype, 950 + 10 * static_cast<unsigned>(l));
  auto run = [&](Backend& b) {
    std::vector<StepTensors> layers_in;  // alive until the reads
    for (const StepInputs& in : inputs) {
      StepTensors& t = layers_in.emplace_back(b, c, in);
      b.attention_with_inputs(t.q, t.k, t.v, t.q_norm, t.k_norm, norm, positions, rope_for(c.rotary_dim), t.k_cache,
                              t.v_cache, options, t.out);
    }
    std::vector<std::array<std::vector<float>, 2>> values;
    for (const StepTensors& t : layers_in) {
      std::vector<float> o(static_cast<std::size_t>(t.out.numel())), kv(static_cast<std::size_t>(t.k_cache.numel()));
      b.download(t.out, o);
      b.download(t.k_cache, kv);
      values.push_back({o, kv});
    }
    return values;
  };
  const auto want = run(*cpu_), got = run(*gpu_);
  for (std::size_t l = 0; l < want.size(); ++l) {
    SCOPED_TRACE(util::concat("layer ", l));
    expect_near_cpu(got[l][0], want[l][0], std::vector<double>(want[l][0].size(), 1.0), kRtol, "out");
    expect_caches_match(c, got[l][1], want[l][1], true, "k cache");
  }
  expect_no_validation_messages(*gpu_);
}

TEST_F(VulkanTest, AttentionStepErrors) {
  Tensor q = gpu_->empty({1, 4, 8}), k = gpu_->empty({1, 3, 8}), v = gpu_->empty({1, 24}), o = gpu_->empty({1, 4, 8});
  Tensor kc = gpu_->empty({8, 24}), vc = gpu_->empty({8, 24});
  const backend::RopeOptions rope = rope_for(8);
  const std::vector<std::int32_t> one = {2};
  EXPECT_THROW(gpu_->attention_with_inputs(q, k, v, {}, {}, {}, one, rope, kc, vc, {.n_past = 2}, o),
               ShapeError);  // 3 KV heads do not divide 4
  Tensor k2 = gpu_->empty({1, 2, 8}), v2 = gpu_->empty({1, 16}), kc2 = gpu_->empty({8, 16}), vc2 = gpu_->empty({8, 16});
  EXPECT_THROW(gpu_->attention_with_inputs(q, k2, v2, {}, {}, {}, one, rope, kc2, vc2, {.n_past = 8}, o),
               ShapeError);  // the new row past the capacity
  const std::vector<std::int32_t> two = {2, 3};
  EXPECT_THROW(gpu_->attention_with_inputs(q, k2, v2, {}, {}, {}, two, rope, kc2, vc2, {.n_past = 2}, o),
               ShapeError);  // two positions for one row
}

}  // namespace
}  // namespace moeflux::test
