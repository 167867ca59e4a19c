// The hybrid's ops on Vulkan against the CPU backend, every configuration and weight dtype:
// copy_column_blocks (bit for bit), causal_conv1d (state carried across calls, in place, K = 1),
// delta_rule_gates (both sides of softplus's threshold), gated_delta_rule per token and chunked
// (grouped key heads, dk != dv, odd sizes, long prompts split into windows, state carried) and
// gated_rms_norm.
#include <algorithm>
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "moeflux/util/error.h"
#include "vulkan_harness.h"

namespace moeflux::test {
namespace {

using Floats = std::vector<float>;

std::size_t sz(std::int64_t n) { return static_cast<std::size_t>(n); }

// Per element max(|want|, floor): for values whose rounding errors scale with their inputs' size.
std::vector<double> floor_scale(const Floats& want, double floor) {
  std::vector<double> scale(want.size());
  for (std::size_t i = 0; i < want.size(); ++i) scale[i] = std::max(double(std::abs(want[i])), floor);
  return scale;
}

double max_abs(const Floats& values) {
  double m = 0.0;
  for (const float v : values) m = std::max(m, double(std::abs(v)));
  return m;
}

class VulkanGatedDelta : public VulkanParamTest<OpCase> {};

TEST_P(VulkanGatedDelta, CopyColumnBlocksIsExact) {
  struct Case {
    std::int64_t T, groups, stride, src_col, width, dst_col, dst_cols;
  };
  for (const Case c : {Case{5, 4, 64, 32, 32, 0, 128}, Case{3, 2, 80, 16, 16, 32, 96}, Case{70, 1, 4099, 7, 4000, 3, 4100},
                       Case{2, 5, 3, 2, 1, 1, 7}}) {
    SCOPED_TRACE(util::concat("T=", c.T, " groups=", c.groups, " stride=", c.stride));
    const std::int64_t src_cols = c.groups * c.stride;
    const Floats src = random_values(sz(c.T * src_cols), 3);
    const backend::ColumnBlocks blocks{c.groups, c.stride, c.src_col, c.width, c.dst_col};
    Guarded sc(*cpu_, {c.T, src_cols}, src), dc(*cpu_, {c.T, c.dst_cols}, Floats(sz(c.T * c.dst_cols), 0.5f));
    Guarded sg(*gpu_, {c.T, src_cols}, src), dg(*gpu_, {c.T, c.dst_cols}, Floats(sz(c.T * c.dst_cols), 0.5f));
    cpu_->copy_column_blocks(sc.tensor(), blocks, dc.tensor());
    gpu_->copy_column_blocks(sg.tensor(), blocks, dg.tensor());
    expect_same_bits(dg.values(), dc.values(), "copy_column_blocks");
    dg.expect_guards_intact("copy_column_blocks");
  }
}

TEST_P(VulkanGatedDelta, CausalConv1dCarriesItsState) {
  const OpCase c = GetParam();
  unsigned seed = 10;
  for (const std::int64_t K : {1, 3, 4}) {
    for (const std::int64_t C : {7, 64, 257}) {
      SCOPED_TRACE(util::concat("K=", K, " C=", C));
      const std::int64_t T = 70;
      const Floats x = random_values(sz(T * C), ++seed, -2.0f, 2.0f);
      const StoredWeight w(c.dtype, {C, K}, random_values(sz(C * K), ++seed));
      const Floats s0 = random_values(sz((K - 1) * C), ++seed, -2.0f, 2.0f);
      Guarded xc(*cpu_, {T, C}, x), sc(*cpu_, {K - 1, C}, s0), oc(*cpu_, {T, C});
      Guarded xg(*gpu_, {T, C}, x), sg(*gpu_, {K - 1, C}, s0), og(*gpu_, {T, C});
      const Tensor wc = cpu_->resident(w.view()), wg = gpu_->resident(w.view());
      // A prompt in two calls, then a token in place: the state carries between them.
      for (const auto& [first, count] : {std::pair<std::int64_t, std::int64_t>{0, 33}, {33, 37}}) {
        Tensor outc = oc.tensor().rows(first, count), outg = og.tensor().rows(first, count);
        cpu_->causal_conv1d(xc.tensor().rows(first, count), wc, sc.tensor(), outc);
        gpu_->causal_conv1d(xg.tensor().rows(first, count), wg, sg.tensor(), outg);
      }
      Tensor lastc = xc.tensor().rows(T - 1, 1), lastg = xg.tensor().rows(T - 1, 1);
      cpu_->causal_conv1d(lastc, wc, sc.tensor(), lastc);
      gpu_->causal_conv1d(lastg, wg, sg.tensor(), lastg);
      const Floats want = oc.values();
      expect_near_cpu(og.values(), want, floor_scale(want, 1.0), 1e-6, "causal_conv1d");
      expect_near_cpu(xg.values(), xc.values(), floor_scale(xc.values(), 1.0), 1e-6, "causal_conv1d in place");
      expect_same_bits(sg.values(), sc.values(), "causal_conv1d state");  // copies of inputs
      og.expect_guards_intact("causal_conv1d");
      sg.expect_guards_intact("causal_conv1d state");
    }
  }
}

TEST_P(VulkanGatedDelta, DeltaRuleGatesMatchCpu) {
  const OpCase c = GetParam();
  for (const std::int64_t HV : {1, 5, 64, 257}) {
    SCOPED_TRACE(util::concat("HV=", HV));
    const std::int64_t T = 37;
    const Floats a = random_values(sz(T * HV), 21, -25.0f, 25.0f), b = random_values(sz(T * HV), 22, -8.0f, 8.0f);
    const StoredWeight a_log(c.dtype, {HV}, random_values(sz(HV), 23, -4.0f, 2.8f));
    const StoredWeight dt_bias(c.dtype, {HV}, random_values(sz(HV), 24, 0.0f, 2.0f));
    Guarded ac(*cpu_, {T, HV}, a), bc(*cpu_, {T, HV}, b), gc(*cpu_, {T, HV}), betac(*cpu_, {T, HV});
    Guarded ag(*gpu_, {T, HV}, a), bg(*gpu_, {T, HV}, b), gg(*gpu_, {T, HV}), betag(*gpu_, {T, HV});
    cpu_->delta_rule_gates(ac.tensor(), bc.tensor(), cpu_->resident(a_log.view()), cpu_->resident(dt_bias.view()),
                           gc.tensor(), betac.tensor());
    gpu_->delta_rule_gates(ag.tensor(), bg.tensor(), gpu_->resident(a_log.view()), gpu_->resident(dt_bias.view()),
                           gg.tensor(), betag.tensor());
    // exp and log of another library (GLSL allows exp 3 + 2|x| ulps; NVIDIA's log near 1 errs by
    // about 2e-6 absolute). g's error counts against 1: it decays the state by exp(g), so a
    // relative error of g far below 1 changes nothing.
    const Floats want_g = gc.values();
    expect_near_cpu(gg.values(), want_g, floor_scale(want_g, 1.0), 1e-5, "delta_rule_gates g");
    expect_near_cpu(betag.values(), betac.values(), 2e-6, "delta_rule_gates beta");
    gg.expect_guards_intact("delta_rule_gates g");
    betag.expect_guards_intact("delta_rule_gates beta");
  }
}

struct DeltaDims {
  std::int64_t T, HK, HV, dk, dv;
};

TEST_P(VulkanGatedDelta, GatedDeltaRuleCarriesItsState) {
  unsigned seed = 40;
  for (const DeltaDims d : {DeltaDims{1, 1, 1, 16, 24}, DeltaDims{5, 2, 4, 16, 24}, DeltaDims{70, 2, 6, 32, 24},
                            DeltaDims{33, 1, 3, 17, 9}, DeltaDims{3, 2, 2, 128, 127}}) {
    SCOPED_TRACE(util::concat("T=", d.T, " HK=", d.HK, " HV=", d.HV, " dk=", d.dk, " dv=", d.dv));
    const Floats q = random_values(sz(d.T * d.HK * d.dk), ++seed, -2.0f, 2.0f);
    const Floats k = random_values(sz(d.T * d.HK * d.dk), ++seed, -2.0f, 2.0f);
    const Floats v = random_values(sz(d.T * d.HV * d.dv), ++seed, -2.0f, 2.0f);
    const Floats g = random_values(sz(d.T * d.HV), ++seed, -2.0f, 0.0f);
    const Floats beta = random_values(sz(d.T * d.HV), ++seed, 0.05f, 1.0f);
    const Floats s0 = random_values(sz(d.HV * d.dk * d.dv), ++seed, -0.5f, 0.5f);
    const Shape qs{d.T, d.HK, d.dk}, vs{d.T, d.HV, d.dv}, hs{d.T, d.HV}, ss{d.HV, d.dk, d.dv};
    Guarded qc(*cpu_, qs, q), kc(*cpu_, qs, k), vc(*cpu_, vs, v), gc(*cpu_, hs, g), bc(*cpu_, hs, beta);
    Guarded qg(*gpu_, qs, q), kg(*gpu_, qs, k), vg(*gpu_, vs, v), gg(*gpu_, hs, g), bg(*gpu_, hs, beta);
    Guarded sc(*cpu_, ss, s0), oc(*cpu_, vs), sg(*gpu_, ss, s0), og(*gpu_, vs);
    // The CPU's per-token recurrence is the reference; the prompt goes in two calls.
    const std::int64_t split = d.T / 2;
    for (const auto& [first, count] : {std::pair{std::int64_t{0}, split}, {split, d.T - split}}) {
      if (count == 0) continue;
      Tensor outc = oc.tensor().rows(first, count), outg = og.tensor().rows(first, count);
      cpu_->gated_delta_rule(qc.tensor().rows(first, count), kc.tensor().rows(first, count),
                             vc.tensor().rows(first, count), gc.tensor().rows(first, count),
                             bc.tensor().rows(first, count), {1}, sc.tensor(), outc);
      gpu_->gated_delta_rule(qg.tensor().rows(first, count), kg.tensor().rows(first, count),
                             vg.tensor().rows(first, count), gg.tensor().rows(first, count),
                             bg.tensor().rows(first, count), {}, sg.tensor(), outg);
    }
    // Sums of dk products carried through the state: relative to the largest output and state entry.
    const Floats want = oc.values(), want_state = sc.values();
    expect_near_cpu(og.values(), want, std::vector<double>(want.size(), max_abs(want)), 2e-6, "gated_delta_rule");
    expect_near_cpu(sg.values(), want_state, std::vector<double>(want_state.size(), max_abs(want_state)), 2e-6,
                    "gated_delta_rule state");
    og.expect_guards_intact("gated_delta_rule");
    sg.expect_guards_intact("gated_delta_rule state");
  }
}

// The chunked prefill (T > 1; the recurrence where the binding limit is too small for its scratch)
// against the CPU's per-token recurrence: chunks of 7 (ragged) and 64, three chunks and a remainder.
TEST_P(VulkanGatedDelta, GatedDeltaChunksAgreeWithTheRecurrence) {
  const DeltaDims d{150, 2, 6, 32, 24};
  const Shape qs{d.T, d.HK, d.dk}, vs{d.T, d.HV, d.dv}, hs{d.T, d.HV}, ss{d.HV, d.dk, d.dv};
  const Floats q = random_values(sz(d.T * d.HK * d.dk), 91, -2.0f, 2.0f), k = random_values(q.size(), 92, -2.0f, 2.0f);
  const Floats v = random_values(sz(d.T * d.HV * d.dv), 93, -2.0f, 2.0f), g = random_values(sz(d.T * d.HV), 94, -2.0f, 0.0f);
  const Floats beta = random_values(sz(d.T * d.HV), 95, 0.05f, 1.0f), s0 = random_values(sz(d.HV * d.dk * d.dv), 96, -0.5f, 0.5f);
  Guarded qc(*cpu_, qs, q), kc(*cpu_, qs, k), vc(*cpu_, vs, v), gc(*cpu_, hs, g), bc(*cpu_, hs, beta);
  Guarded sc(*cpu_, ss, s0), oc(*cpu_, vs);
  cpu_->gated_delta_rule(qc.tensor(), kc.tensor(), vc.tensor(), gc.tensor(), bc.tensor(), {1}, sc.tensor(), oc.tensor());
  const Floats want = oc.values(), want_state = sc.values();
  for (const std::int64_t chunk : {7, 64}) {
    SCOPED_TRACE(util::concat("chunk_size ", chunk));
    Guarded qg(*gpu_, qs, q), kg(*gpu_, qs, k), vg(*gpu_, vs, v), gg(*gpu_, hs, g), bg(*gpu_, hs, beta);
    Guarded sg(*gpu_, ss, s0), og(*gpu_, vs);
    gpu_->gated_delta_rule(qg.tensor(), kg.tensor(), vg.tensor(), gg.tensor(), bg.tensor(), {chunk}, sg.tensor(),
                           og.tensor());
    expect_near_cpu(og.values(), want, std::vector<double>(want.size(), max_abs(want)), 2e-6, "gated_delta_rule chunked");
    expect_near_cpu(sg.values(), want_state, std::vector<double>(want_state.size(), max_abs(want_state)), 2e-6,
                    "gated_delta_rule chunked state");
    og.expect_guards_intact("gated_delta_rule chunked");
    sg.expect_guards_intact("gated_delta_rule chunked state");
  }
}

TEST_P(VulkanGatedDelta, GatedRmsNormMatchesCpu) {
  const OpCase c = GetParam();
  unsigned seed = 70;
  for (const std::int64_t C : {1, 7, 24, 64, 65, 257, 4099}) {
    SCOPED_TRACE(util::concat("C=", C));
    const std::int64_t R = 1 + C % 6;
    const Floats x = random_values(sz(R * C), ++seed, -2.0f, 2.0f), z = random_values(sz(R * C), ++seed, -3.0f, 3.0f);
    const StoredWeight w(c.dtype, {C}, random_values(sz(C), ++seed, -1.5f, 1.5f));
    Guarded xc(*cpu_, {R, C}, x), zc(*cpu_, {R, C}, z), oc(*cpu_, {R, C});
    Guarded xg(*gpu_, {R, C}, x), zg(*gpu_, {R, C}, z), og(*gpu_, {R, C});
    const Tensor wg = gpu_->resident(w.view());
    cpu_->gated_rms_norm(xc.tensor(), zc.tensor(), cpu_->resident(w.view()), 1e-6f, oc.tensor());
    gpu_->gated_rms_norm(xg.tensor(), zg.tensor(), wg, 1e-6f, og.tensor());
    const Floats want = oc.values();
    expect_near_cpu(og.values(), want, 1e-5, "gated_rms_norm");
    og.expect_guards_intact("gated_rms_norm");
    gpu_->gated_rms_norm(xg.tensor(), zg.tensor(), wg, 1e-6f, xg.tensor());  // in place
    expect_near_cpu(xg.values(), want, 1e-5, "gated_rms_norm in place");
  }
}

TEST_P(VulkanGatedDelta, ShapeErrorsNameTheOp) {
  Tensor x = gpu_->empty({5, 7}), w = gpu_->empty({7, 4}), s_bad = gpu_->empty({4, 7}), out = gpu_->empty({5, 7});
  EXPECT_THROW(gpu_->causal_conv1d(x, w, s_bad, out), ShapeError);
  Tensor q = gpu_->empty({3, 2, 16}), v = gpu_->empty({3, 3, 24}), g = gpu_->empty({3, 3});
  Tensor st = gpu_->empty({3, 16, 24}), o = gpu_->empty({3, 3, 24});
  EXPECT_THROW(gpu_->gated_delta_rule(q, q, v, g, g, {}, st, o), ShapeError);  // 3 value heads, 2 key heads
  Tensor src = gpu_->empty({3, 12}), dst = gpu_->empty({3, 8});
  EXPECT_THROW(gpu_->copy_column_blocks(src, {4, 3, 1, 3, 0}, dst), ShapeError);
}

INSTANTIATE_TEST_SUITE_P(Cases, VulkanGatedDelta,
                         ::testing::ValuesIn(op_cases({format::Dtype::f32, format::Dtype::f16, format::Dtype::bf16})),
                         op_case_name);

}  // namespace
}  // namespace moeflux::test
