// attention on Vulkan against the CPU backend: n_past 0/5/300, T 1 and 7 (the split pass, chunks
// combined) and 64 (query tiles), GQA 1 and 4, head dimensions 16 to 128, sliding windows, Dv != D,
// long contexts, in every configuration (smallrange: keys in windows, the split pass everywhere);
// the split pass's decode geometry (GQA 1 to 12, one chunk and many, vec4 rows and not) and its
// choice of one dispatch or two; the prefill pass's geometry (items of 32 (position, head) rows,
// key tiles of 64, D in slices of 32, output passes of 128 dims) at the edges of each, and past the
// device's group count. Cache rows no query may see are NaN, so reading one fails the comparison.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "moeflux/util/error.h"
#include "vulkan_harness.h"

namespace moeflux::test {
namespace {

// Relative to sum_j p_j |v_j|: an online softmax rounds differently from the CPU's, by ~1e-7 per
// score and per partial sum.
constexpr double kRtol = 1e-5;

struct Case {
  std::int64_t T, n_past, nh, nkv, D, Dv, window;
};

std::int64_t first_key(std::int64_t position, std::int64_t window) {
  return window > 0 ? std::max<std::int64_t>(0, position - window + 1) : 0;
}

// Random rows, NaN outside [the first key any query sees, the last query's position].
std::vector<float> cache_values(const Case& c, std::int64_t capacity, std::int64_t row, unsigned seed) {
  std::vector<float> values = random_values(static_cast<std::size_t>(capacity * row), seed);
  const std::int64_t first = first_key(c.n_past, c.window), last = c.n_past + c.T - 1;
  for (std::int64_t r = 0; r < capacity; ++r) {
    if (r < first || r > last) std::fill_n(values.begin() + r * row, row, std::numeric_limits<float>::quiet_NaN());
  }
  return values;
}

// The error scale sum_j p_j |v_jd| per output, with p from a double-precision softmax.
std::vector<double> error_scale(const Case& c, const std::vector<float>& q, const std::vector<float>& k,
                                const std::vector<float>& v, float scale) {
  std::vector<double> out(static_cast<std::size_t>(c.T * c.nh * c.Dv), 0.0);
  for (std::int64_t t = 0; t < c.T; ++t) {
    const std::int64_t position = c.n_past + t, first = first_key(position, c.window);
    for (std::int64_t h = 0; h < c.nh; ++h) {
      const std::int64_t g = h / (c.nh / c.nkv);
      std::vector<double> s;
      for (std::int64_t j = first; j <= position; ++j) {
        double dot = 0.0;
        for (std::int64_t d = 0; d < c.D; ++d) {
          dot += static_cast<double>(q[static_cast<std::size_t>((t * c.nh + h) * c.D + d)]) *
                 static_cast<double>(k[static_cast<std::size_t>((j * c.nkv + g) * c.D + d)]);
        }
        s.push_back(dot * static_cast<double>(scale));
      }
      const double max = *std::max_element(s.begin(), s.end());
      double sum = 0.0;
      for (double& x : s) sum += x = std::exp(x - max);
      for (std::int64_t j = first; j <= position; ++j) {
        const double p = s[static_cast<std::size_t>(j - first)] / sum;
        for (std::int64_t d = 0; d < c.Dv; ++d) {
          out[static_cast<std::size_t>((t * c.nh + h) * c.Dv + d)] +=
              p * std::abs(static_cast<double>(v[static_cast<std::size_t>((j * c.nkv + g) * c.Dv + d)]));
        }
      }
    }
  }
  return out;
}

// guard: the elements before each tensor (ops/harness.h); 37 leaves rows off vec4 alignment, 36
// keeps them on it (where D and Dv are multiples of 4), so both load paths of the split pass run.
// q_range: q in [-q_range, q_range]; large values give scores of hundreds, which overflow exp
// wherever a max is not subtracted, and score rounding errors of ~1e-5 (rtol: the bound).
void check_attention(Backend& cpu, backend::vk::VulkanBackend& gpu, const Case& c, unsigned seed,
                     std::int64_t guard = 37, float q_range = 2.0f, double rtol = kRtol) {
  SCOPED_TRACE(util::concat("T=", c.T, " n_past=", c.n_past, " nh=", c.nh, " nkv=", c.nkv, " D=", c.D, " Dv=", c.Dv,
                            " window=", c.window, " guard=", guard));
  const std::int64_t capacity = c.n_past + c.T + 3;
  const std::vector<float> q = random_values(static_cast<std::size_t>(c.T * c.nh * c.D), seed, -q_range, q_range);
  const std::vector<float> k = cache_values(c, capacity, c.nkv * c.D, seed + 1);
  const std::vector<float> v = cache_values(c, capacity, c.nkv * c.Dv, seed + 2);
  const backend::AttentionOptions options{.scale = 1.0f / std::sqrt(static_cast<float>(c.D)), .n_past = c.n_past,
                                          .sliding_window = c.window};
  auto run = [&](Backend& b) {
    Guarded qt(b, {c.T, c.nh, c.D}, q, guard), kt(b, {capacity, c.nkv, c.D}, k, guard);
    Guarded vt(b, {capacity, c.nkv, c.Dv}, v, guard), out(b, {c.T, c.nh, c.Dv}, guard);
    b.attention(qt.tensor(), kt.tensor(), vt.tensor(), options, out.tensor());
    out.expect_guards_intact("attention");
    return out.values();
  };
  const std::vector<float> want = run(cpu), got = run(gpu);
  expect_near_cpu(got, want, error_scale(c, q, k, v, options.scale), rtol, "attention");
}

class VulkanAttention : public VulkanParamTest<OpCase> {};

TEST_P(VulkanAttention, MatchesCpu) {
  unsigned seed = 1200;
  for (const std::int64_t n_past : {0, 5, 300}) {
    for (const std::int64_t T : {1, 7, 64}) {
      for (const std::int64_t gqa : {1, 4}) {
        for (const std::int64_t D : {16, 32, 64, 128}) {
          for (const std::int64_t window : {0, 37}) {
            check_attention(*cpu_, *gpu_, {T, n_past, 2 * gqa, 2, D, D, window}, seed += 3);
          }
        }
      }
    }
  }
}

TEST_P(VulkanAttention, OddShapes) {
  const Case cases[] = {
      {1, 0, 1, 1, 1, 1, 0},          // one of everything
      {9, 0, 3, 1, 20, 20, 0},        // the smallest query tile count, MQA, odd D
      {33, 4, 6, 3, 64, 32, 0},       // Dv != D
      {17, 11, 4, 2, 256, 256, 5},    // the query tiles' largest D, a window shorter than T
      {12, 2, 2, 1, 320, 96, 0},      // D past the query tiles: the split pass for prefill
      {1, 4100, 8, 2, 64, 64, 0},     // a long context: many chunks
      {3, 5000, 4, 4, 32, 32, 4097},  // a window inside a long context
  };
  unsigned seed = 1300;
  for (const Case& c : cases) check_attention(*cpu_, *gpu_, c, seed += 3);
}

// The shapes decode gives the split passes (T < 9): a context of up to two blocks of keys takes
// attention_split's single chunk (blocks of 8 to 64 keys by D); longer ones attention_decode (a
// workgroup per (t, KV head, chunk of up to 24 keys) with all of the group's query heads) where D
// and Dv are multiples of 4, up to 64 chunks; else attention_split's chunks (batches of up to 8
// query heads), each then merged by attention_combine.
TEST_P(VulkanAttention, Decode) {
  const Case cases[] = {
      {1, 0, 32, 4, 128, 128, 0},      // one key (Qwen3-30B-A3B: GQA 8, D 128)
      {1, 30, 32, 4, 128, 128, 0},     // 31 keys: one block of a single chunk
      {1, 63, 32, 4, 128, 128, 0},     // 64: the most keys of a single chunk (two blocks)
      {1, 64, 32, 4, 128, 128, 0},     // 65: attention_decode, a last chunk of 17 keys
      {1, 600, 32, 4, 128, 128, 0},    // the profiled decode step: 26 chunks
      {1, 600, 32, 4, 128, 128, 101},  // a window inside it: chunks without keys
      {1, 9000, 16, 2, 64, 64, 0},     // past 64 chunks: attention_split, chunks of two blocks
      {1, 200, 4, 4, 64, 64, 0},       // GQA 1
      {1, 301, 8, 2, 128, 128, 0},     // GQA 4
      {1, 300, 24, 2, 64, 64, 0},      // GQA 12
      {1, 77, 6, 2, 18, 18, 0},        // GQA 3, D not a multiple of 4: attention_split, float loads
      {2, 45, 9, 3, 20, 36, 0},        // Dv != D, odd head counts
      {5, 40, 16, 2, 64, 64, 3},       // rows that see different keys (a window shorter than T)
      {8, 150, 32, 4, 128, 128, 0},    // the most rows the split passes take from few tokens
      {1, 100, 8, 1, 512, 512, 0},     // the largest D: chunks of 6 keys
      {1, 200, 4, 1, 16, 512, 0},      // small D, large Dv
      {1, 70, 4, 2, 512, 16, 5},       // large D, small Dv
      {1, 100, 64, 1, 32, 32, 0},      // GQA 64: chunks of 7 keys, the most heads attention_decode takes
      {1, 100, 128, 1, 16, 16, 0},     // GQA 128: attention_split, batches of 8 heads
      {1, 2000, 32, 4, 128, 128, 0},   // 84 chunks of 24 would be too many: attention_split
  };
  unsigned seed = 1400;
  for (const std::int64_t guard : {36, 37}) {
    for (const Case& c : cases) check_attention(*cpu_, *gpu_, c, seed += 3, guard);
  }
  // Peaked softmaxes (scores in the hundreds): every chunk's and every block's max matters.
  for (const Case& c : {cases[4], cases[6], cases[9]}) check_attention(*cpu_, *gpu_, c, seed += 3, 36, 200.0f, 1e-3);
}

// attention_prefill (T >= 9, D and Dv <= 256): a workgroup per 32 (position, head) rows of one KV
// head and pass of 128 output dimensions, walking key tiles of 64 with D in slices of 32.
TEST_P(VulkanAttention, Prefill) {
  const Case cases[] = {
      {130, 0, 32, 4, 128, 128, 0},   // Qwen3-30B-A3B (GQA 8, D 128): 3 key tiles, a last item of 16 rows
      {100, 37, 32, 4, 128, 128, 0},  // continuing a cache: tiles start off multiples of 64
      {77, 0, 4, 4, 64, 64, 0},       // GQA 1: 32 positions per item, T a multiple of neither tile
      {65, 0, 16, 4, 64, 64, 0},      // GQA 4: 8 positions per item, a last key tile of one key
      {45, 20, 16, 2, 256, 256, 0},   // D 256 (8 slices), two output passes (Qwen3-Next's shape)
      {40, 10, 8, 2, 256, 200, 0},    // Dv 200: a second pass of 72 dimensions
      {50, 0, 6, 2, 96, 160, 0},      // 3 slices (the buffers alternate across tiles), Dv > D
      {33, 4, 6, 2, 20, 36, 0},       // GQA 3: items start inside a position's heads; part of a slice
      {70, 0, 24, 2, 18, 18, 0},      // GQA 12, D not a multiple of 4: float loads
      {100, 0, 64, 1, 32, 16, 0},     // GQA 64: an item holds half a position's heads
      {12, 0, 2, 1, 1, 1, 0},         // D = Dv = 1
      {9, 500, 8, 2, 64, 64, 0},      // the fewest rows, 509 keys: 8 tiles, rows past T in the item
      {120, 0, 8, 2, 64, 64, 50},     // a window shorter than a tile and than T
      {90, 200, 8, 4, 64, 64, 100},   // a window in a continued cache: the first key mid-cache
      {70, 30, 4, 1, 32, 32, 1},      // window 1: each row sees itself only
      {150, 0, 4, 2, 128, 64, 70},    // a window longer than a tile: rows' first keys in any tile
  };
  // smallrange sends most of these to the split pass (slow on lavapipe, and covered above) and the
  // rest to prefill in several dispatches of query rows: once suffices there.
  const bool small = GetParam().config.max_storage_range > 0;
  unsigned seed = 1600;
  for (const std::int64_t guard : {36, 37}) {
    if (small && guard == 36) continue;
    for (const Case& c : cases) check_attention(*cpu_, *gpu_, c, seed += 3, guard);
  }
  if (small) return;
  // Peaked softmaxes: a later tile's max must rescale what the earlier tiles summed.
  for (const Case& c : {cases[0], cases[4], cases[13]}) check_attention(*cpu_, *gpu_, c, seed += 3, 36, 200.0f, 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Cases, VulkanAttention, ::testing::ValuesIn(op_cases()), op_case_name);

// Prefill is one dispatch whatever the shape (while the keys fit one binding).
TEST_F(VulkanTest, AttentionPrefillDispatches) {
  const std::int64_t nh = 32, nkv = 4, D = 128, T = 100, capacity = 300;
  Tensor q = gpu_->empty({T, nh, D}), k = gpu_->empty({capacity, nkv, D}), v = gpu_->empty({capacity, nkv, D});
  Tensor o = gpu_->empty({T, nh, D});
  gpu_->upload(random_values(static_cast<std::size_t>(T * nh * D), 1700), q);
  gpu_->upload(random_values(static_cast<std::size_t>(capacity * nkv * D), 1701), k);
  gpu_->upload(random_values(static_cast<std::size_t>(capacity * nkv * D), 1702), v);
  for (const std::int64_t n_past : {0, 150}) {
    const double before = gpu_->stats().at("vk_dispatches");
    gpu_->attention(q, k, v, {.scale = 0.1f, .n_past = n_past}, o);
    EXPECT_EQ(gpu_->stats().at("vk_dispatches") - before, 1) << "n_past " << n_past;
  }
  gpu_->finish();
}

// Past the device's group count a prefill workgroup takes several items in turn (its shared memory
// reused after barriers): a device pretending to allow 3 groups.
TEST(VulkanAttentionPrefill, AWorkgroupTakesSeveralItemsPastTheGroupLimit) {
  auto cpu = make_backend();
  auto gpu = make_vulkan({.name = "3groups", .max_groups = 3});
  unsigned seed = 1800;
  for (const Case& c : {Case{70, 5, 16, 2, 64, 64, 0}, Case{40, 0, 4, 2, 256, 160, 30}}) {
    check_attention(*cpu, *gpu, c, seed += 3);
  }
  expect_no_validation_messages(*gpu);
}

// A decode step over few keys is one dispatch (attention_split's single chunk writes the output);
// past two of its blocks (64 keys for D = 128) attention_decode's 24-key chunks are merged by
// attention_combine, and past 64 of those attention_split's longer chunks: two dispatches.
TEST(VulkanAttentionDecode, DispatchesAndKernels) {
  auto gpu = make_vulkan({.name = "profiled", .profile = true});
  const std::int64_t nh = 32, nkv = 4, D = 128, capacity = 7000;
  Tensor q = gpu->empty({1, nh, D}), k = gpu->empty({capacity, nkv, D}), v = gpu->empty({capacity, nkv, D});
  Tensor o = gpu->empty({1, nh, D});
  gpu->upload(random_values(static_cast<std::size_t>(nh * D), 1500), q);
  gpu->upload(random_values(static_cast<std::size_t>(capacity * nkv * D), 1501), k);
  gpu->upload(random_values(static_cast<std::size_t>(capacity * nkv * D), 1502), v);
  struct Expected {
    std::int64_t n_past;
    double dispatches;
    const char* kernel;
  };
  const Expected cases[] = {{0, 1, "attention_split"},   {31, 1, "attention_split"},
                            {63, 1, "attention_split"},  {64, 2, "attention_decode"},
                            {600, 2, "attention_decode"}, {2000, 2, "attention_split"}};
  for (const Expected& c : cases) {
    gpu->finish();
    const auto before = gpu->stats();
    gpu->attention(q, k, v, {.scale = 0.1f, .n_past = c.n_past}, o);
    gpu->finish();
    const auto after = gpu->stats();
    const auto commands = [&](const std::map<std::string, double>& s) {
      const auto it = s.find(std::string("gpu_commands.") + c.kernel);
      return it == s.end() ? 0.0 : it->second;
    };
    EXPECT_EQ(after.at("vk_dispatches") - before.at("vk_dispatches"), c.dispatches) << "n_past " << c.n_past;
    EXPECT_EQ(commands(after) - commands(before), 1.0) << "n_past " << c.n_past << ": " << c.kernel;
  }
  expect_no_validation_messages(*gpu);
}

TEST_F(VulkanTest, AttentionErrors) {
  Tensor q = gpu_->empty({1, 4, 8}), k = gpu_->empty({4, 3, 8}), v = gpu_->empty({4, 3, 8}), o = gpu_->empty({1, 4, 8});
  EXPECT_THROW(gpu_->attention(q, k, v, {}, o), ShapeError);  // 3 KV heads do not divide 4
  Tensor k2 = gpu_->empty({4, 2, 8}), v2 = gpu_->empty({4, 2, 8});
  EXPECT_THROW(gpu_->attention(q, k2, v2, {.n_past = 4}, o), ShapeError);  // past the capacity
  Tensor big_q = gpu_->empty({1, 2, 600}), big_k = gpu_->empty({4, 2, 600}), big_o = gpu_->empty({1, 2, 600});
  EXPECT_THROW(gpu_->attention(big_q, big_k, big_k, {}, big_o), Unsupported);
}

}  // namespace
}  // namespace moeflux::test
