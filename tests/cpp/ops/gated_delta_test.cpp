// The Gated DeltaNet ops (causal_conv1d, gated_delta_rule, gated_rms_norm) against plain double
// loops: odd sizes, grouped key heads, dk != dv, state carried across calls, poisoned outputs.
#include <algorithm>
#include <cmath>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "harness.h"
#include "moeflux/util/error.h"

namespace moeflux::test {
namespace {

using Floats = std::vector<float>;
using Doubles = std::vector<double>;

double silu(double x) { return x / (1.0 + std::exp(-x)); }

std::size_t sz(std::int64_t n) { return static_cast<std::size_t>(n); }

Doubles widen(const Floats& f) { return {f.begin(), f.end()}; }

// x [T, C], w [C, K], state [K-1, C] (updated in place) -> out [T, C]
Reference conv_ref(const Doubles& x, const Doubles& w, std::vector<double>& state, std::int64_t T,
                   std::int64_t C, std::int64_t K) {
  std::vector<double> win(state);
  win.insert(win.end(), x.begin(), x.end());
  Reference ref{std::vector<double>(sz(T * C)), std::vector<double>(sz(T * C))};
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t c = 0; c < C; ++c) {
      double a = 0.0, mag = 0.0;
      for (std::int64_t i = 0; i < K; ++i) {
        a += w[sz(c * K + i)] * win[sz((t + i) * C + c)];
        mag += std::abs(w[sz(c * K + i)] * win[sz((t + i) * C + c)]);
      }
      ref.value[sz(t * C + c)] = silu(a);
      ref.scale[sz(t * C + c)] = 1.1 * mag + std::abs(silu(a));  // |silu'| < 1.1
    }
  }
  state.assign(win.end() - (K - 1) * C, win.end());
  return ref;
}

struct DeltaDims {
  std::int64_t T, HK, HV, dk, dv;
};

// The recurrence of architectures.md 3.2 in double; state [HV, dk, dv] is updated in place.
// Scales: per output, sum_i |S_ij q_i| times the head's largest state entry over time (errors
// carried through the state grow with it); per state entry, that largest entry.
Reference delta_ref(const Doubles& q, const Doubles& k, const Doubles& v, const Doubles& g,
                    const Doubles& beta, std::vector<double>& S, const DeltaDims& d) {
  Reference ref{std::vector<double>(sz(d.T * d.HV * d.dv)), {}};
  ref.scale.resize(ref.value.size());
  const auto l2n = [&](const Doubles& x, std::int64_t at, double scale) {
    std::vector<double> out(sz(d.dk));
    double ss = 0.0;
    for (std::int64_t i = 0; i < d.dk; ++i) ss += (x[sz(at + i)]) * x[sz(at + i)];
    for (std::int64_t i = 0; i < d.dk; ++i) out[sz(i)] = x[sz(at + i)] / std::sqrt(ss + 1e-6) * scale;
    return out;
  };
  for (std::int64_t t = 0; t < d.T; ++t) {
    for (std::int64_t h = 0; h < d.HV; ++h) {
      const std::int64_t kh = h / (d.HV / d.HK);
      const auto qn = l2n(q, (t * d.HK + kh) * d.dk, 1.0 / std::sqrt(double(d.dk)));
      const auto kn = l2n(k, (t * d.HK + kh) * d.dk, 1.0);
      double* Sh = S.data() + h * d.dk * d.dv;
      const double decay = std::exp(g[sz(t * d.HV + h)]);
      for (std::int64_t e = 0; e < d.dk * d.dv; ++e) Sh[e] *= decay;
      double smax = 1.0;
      for (std::int64_t j = 0; j < d.dv; ++j) {
        double kv = 0.0;
        for (std::int64_t i = 0; i < d.dk; ++i) kv += Sh[i * d.dv + j] * kn[sz(i)];
        const double u = beta[sz(t * d.HV + h)] * (v[sz((t * d.HV + h) * d.dv + j)] - kv);
        for (std::int64_t i = 0; i < d.dk; ++i) Sh[i * d.dv + j] += kn[sz(i)] * u;
      }
      for (std::int64_t e = 0; e < d.dk * d.dv; ++e) smax = std::max(smax, std::abs(Sh[e]));
      for (std::int64_t j = 0; j < d.dv; ++j) {
        double o = 0.0, mag = 0.0;
        for (std::int64_t i = 0; i < d.dk; ++i) {
          o += Sh[i * d.dv + j] * qn[sz(i)];
          mag += std::abs(qn[sz(i)]);
        }
        ref.value[sz((t * d.HV + h) * d.dv + j)] = o;
        ref.scale[sz((t * d.HV + h) * d.dv + j)] = mag * smax;
      }
    }
  }
  return ref;
}

Reference state_ref(const std::vector<double>& S, double scale) {
  return {S, std::vector<double>(S.size(), scale)};
}

// x, z [R, C], w [C]
Reference gated_norm_ref(const Doubles& x, const Doubles& z, const Doubles& w, std::int64_t C, double eps) {
  Reference ref{std::vector<double>(x.size()), std::vector<double>(x.size())};
  for (std::size_t r = 0; r < x.size() / sz(C); ++r) {
    double ss = 0.0;
    for (std::size_t c = 0; c < sz(C); ++c) ss += (x[r * sz(C) + c]) * x[r * sz(C) + c];
    const double inv = 1.0 / std::sqrt(ss / double(C) + eps);
    for (std::size_t c = 0; c < sz(C); ++c) {
      const std::size_t e = r * sz(C) + c;
      ref.value[e] = w[c] * x[e] * inv * silu(z[e]);
      ref.scale[e] = std::abs(ref.value[e]) + 1e-30;
    }
  }
  return ref;
}

// ---- causal_conv1d

struct ConvCase {
  std::int64_t T, C, K;
};
void PrintTo(const ConvCase& c, std::ostream* os) { *os << "T=" << c.T << " C=" << c.C << " K=" << c.K; }

class CausalConv1d : public ::testing::TestWithParam<ConvCase> {};

TEST_P(CausalConv1d, MatchesReferenceAndRollsState) {
  const ConvCase c = GetParam();
  auto backend = make_backend();
  const Floats x = random_values(sz(c.T * c.C), 21, -2.0f, 2.0f);
  const Floats w = random_values(sz(c.C * c.K), 22);
  const Floats s0 = random_values(sz((c.K - 1) * c.C), 23, -2.0f, 2.0f);
  Guarded xt(*backend, {c.T, c.C}, x), wt(*backend, {c.C, c.K}, w), st(*backend, {c.K - 1, c.C}, s0);
  Guarded out(*backend, {c.T, c.C});
  backend->causal_conv1d(xt.tensor(), wt.tensor(), st.tensor(), out.tensor());
  std::vector<double> s = widen(s0);
  expect_close(out.values(), conv_ref(widen(x), widen(w), s, c.T, c.C, c.K), 1e-6, "causal_conv1d");
  expect_close(st.values(), state_ref(s, 1.0), 0.0, "causal_conv1d state");  // copies: exact
  out.expect_guards_intact("causal_conv1d");
  st.expect_guards_intact("causal_conv1d state");
}

INSTANTIATE_TEST_SUITE_P(Shapes, CausalConv1d,
                         ::testing::Values(ConvCase{1, 7, 4}, ConvCase{5, 7, 4}, ConvCase{33, 7, 4},
                                           ConvCase{1, 64, 4}, ConvCase{5, 64, 4}, ConvCase{33, 64, 4},
                                           ConvCase{2, 7, 1}),
                         [](const auto& test) {
                           return util::concat("T", test.param.T, "_C", test.param.C, "_K", test.param.K);
                         });

TEST(CausalConv1dState, TwoCallsEqualOneBitForBit) {
  auto backend = make_backend();
  const std::int64_t C = 7, K = 4;
  const Floats x = random_values(sz(6 * C), 31, -2.0f, 2.0f);
  const Floats w = random_values(sz(C * K), 32);
  const Floats zeros(sz((K - 1) * C), 0.0f);
  Guarded xt(*backend, {6, C}, x), wt(*backend, {C, K}, w);
  Guarded one_state(*backend, {K - 1, C}, zeros), two_state(*backend, {K - 1, C}, zeros);
  Guarded one(*backend, {6, C}), two(*backend, {6, C});
  backend->causal_conv1d(xt.tensor(), wt.tensor(), one_state.tensor(), one.tensor());
  for (std::int64_t first : {0, 3}) {
    Tensor out = two.tensor().rows(first, 3);
    backend->causal_conv1d(xt.tensor().rows(first, 3), wt.tensor(), two_state.tensor(), out);
  }
  EXPECT_EQ(one.values(), two.values());
  EXPECT_EQ(one_state.values(), two_state.values());
  // From zero state the first output sees only x_0: silu(w[c][K-1] * x_0[c]).
  std::vector<double> s(zeros.size(), 0.0);
  expect_close(one.values(), conv_ref(widen(x), widen(w), s, 6, C, K), 1e-6, "causal_conv1d from zeros");
}

TEST(CausalConv1dState, InPlace) {
  auto backend = make_backend();
  const std::int64_t T = 5, C = 64, K = 4;
  const Floats x = random_values(sz(T * C), 41), w = random_values(sz(C * K), 42);
  const Floats s0 = random_values(sz((K - 1) * C), 43);
  Guarded xt(*backend, {T, C}, x), wt(*backend, {C, K}, w), st(*backend, {K - 1, C}, s0);
  backend->causal_conv1d(xt.tensor(), wt.tensor(), st.tensor(), xt.tensor());
  std::vector<double> s = widen(s0);
  expect_close(xt.values(), conv_ref(widen(x), widen(w), s, T, C, K), 1e-6, "causal_conv1d in place");
  xt.expect_guards_intact("causal_conv1d in place");
}

// ---- gated_delta_rule

void PrintTo(const DeltaDims& d, std::ostream* os) {
  *os << "T=" << d.T << " HK=" << d.HK << " HV=" << d.HV << " dk=" << d.dk << " dv=" << d.dv;
}

struct DeltaInputs {
  Floats q, k, v, g, beta, s0;
  explicit DeltaInputs(const DeltaDims& d, unsigned seed)
      : q(random_values(sz(d.T * d.HK * d.dk), seed, -2.0f, 2.0f)),
        k(random_values(sz(d.T * d.HK * d.dk), seed + 1, -2.0f, 2.0f)),
        v(random_values(sz(d.T * d.HV * d.dv), seed + 2, -2.0f, 2.0f)),
        g(random_values(sz(d.T * d.HV), seed + 3, -2.0f, 0.0f)),
        beta(random_values(sz(d.T * d.HV), seed + 4, 0.05f, 1.0f)),
        s0(random_values(sz(d.HV * d.dk * d.dv), seed + 5, -0.5f, 0.5f)) {}
};

class GatedDeltaRule : public ::testing::TestWithParam<DeltaDims> {};

// float32 products and sums of dk terms per step, carried through the state over T steps.
constexpr double kDeltaRtol = 1e-6;  // worst seen: 6.5e-8

// Every algorithm: the per-token recurrence (chunk 1), chunks that split T unevenly (7), and the
// default chunk of 64 (one chunk, or several for T > 64).
TEST_P(GatedDeltaRule, MatchesReference) {
  const DeltaDims d = GetParam();
  auto backend = make_backend();
  const DeltaInputs in(d, 51);
  std::vector<double> S = widen(in.s0);
  const Reference ref = delta_ref(widen(in.q), widen(in.k), widen(in.v), widen(in.g), widen(in.beta), S, d);
  const double smax = std::max(1.0, std::abs(*std::max_element(S.begin(), S.end(), [](double a, double b) {
    return std::abs(a) < std::abs(b);
  })));
  for (const std::int64_t chunk : {1, 7, 64}) {
    SCOPED_TRACE(util::concat("chunk_size ", chunk));
    Guarded q(*backend, {d.T, d.HK, d.dk}, in.q), k(*backend, {d.T, d.HK, d.dk}, in.k);
    Guarded v(*backend, {d.T, d.HV, d.dv}, in.v), g(*backend, {d.T, d.HV}, in.g);
    Guarded beta(*backend, {d.T, d.HV}, in.beta), state(*backend, {d.HV, d.dk, d.dv}, in.s0);
    Guarded out(*backend, {d.T, d.HV, d.dv});
    backend->gated_delta_rule(q.tensor(), k.tensor(), v.tensor(), g.tensor(), beta.tensor(), {chunk},
                              state.tensor(), out.tensor());
    expect_close(out.values(), ref, kDeltaRtol, "gated_delta_rule");
    expect_close(state.values(), state_ref(S, smax), kDeltaRtol, "gated_delta_rule state");
    out.expect_guards_intact("gated_delta_rule");
    state.expect_guards_intact("gated_delta_rule state");
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, GatedDeltaRule,
                         ::testing::Values(DeltaDims{1, 1, 1, 16, 24}, DeltaDims{5, 1, 2, 16, 24},
                                           DeltaDims{33, 2, 2, 16, 24}, DeltaDims{33, 2, 4, 16, 24},
                                           DeltaDims{5, 2, 4, 16, 24}, DeltaDims{1, 2, 4, 16, 24},
                                           DeltaDims{70, 2, 4, 16, 24}, DeltaDims{150, 1, 3, 17, 9}),
                         [](const auto& test) {
                           const DeltaDims& d = test.param;
                           return util::concat("T", d.T, "_HK", d.HK, "_HV", d.HV, "_dk", d.dk, "_dv", d.dv);
                         });

TEST(GatedDeltaRuleState, TwoCallsEqualOne) {
  auto backend = make_backend();
  const DeltaDims d{6, 2, 4, 16, 24};
  const DeltaInputs in(d, 61);
  Guarded q(*backend, {d.T, d.HK, d.dk}, in.q), k(*backend, {d.T, d.HK, d.dk}, in.k);
  Guarded v(*backend, {d.T, d.HV, d.dv}, in.v), g(*backend, {d.T, d.HV}, in.g);
  Guarded beta(*backend, {d.T, d.HV}, in.beta);
  const Floats zeros(in.s0.size(), 0.0f);
  Guarded one_state(*backend, {d.HV, d.dk, d.dv}, zeros), two_state(*backend, {d.HV, d.dk, d.dv}, zeros);
  Guarded one(*backend, {d.T, d.HV, d.dv}), two(*backend, {d.T, d.HV, d.dv});
  backend->gated_delta_rule(q.tensor(), k.tensor(), v.tensor(), g.tensor(), beta.tensor(), {},
                            one_state.tensor(), one.tensor());
  for (std::int64_t first : {0, 3}) {
    Tensor out = two.tensor().rows(first, 3);
    backend->gated_delta_rule(q.tensor().rows(first, 3), k.tensor().rows(first, 3),
                              v.tensor().rows(first, 3), g.tensor().rows(first, 3),
                              beta.tensor().rows(first, 3), {}, two_state.tensor(), out);
  }
  const Floats a = one.values(), b = two.values(), sa = one_state.values(), sb = two_state.values();
  for (std::size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-6) << "out " << i;
  for (std::size_t i = 0; i < sa.size(); ++i) ASSERT_NEAR(sa[i], sb[i], 1e-6) << "state " << i;
  two.expect_guards_intact("gated_delta_rule two calls");
}

// The chunked form (a prefill) against the per-token recurrence (decode), both in float32 from the
// same state: they agree to float rounding, over several chunks and a ragged last one.
TEST(GatedDeltaRuleChunked, AgreesWithPerTokenRecurrence) {
  auto backend = make_backend();
  const DeltaDims d{150, 2, 6, 32, 24};
  const DeltaInputs in(d, 81);
  Guarded q(*backend, {d.T, d.HK, d.dk}, in.q), k(*backend, {d.T, d.HK, d.dk}, in.k);
  Guarded v(*backend, {d.T, d.HV, d.dv}, in.v), g(*backend, {d.T, d.HV}, in.g);
  Guarded beta(*backend, {d.T, d.HV}, in.beta);
  Guarded chunk_state(*backend, {d.HV, d.dk, d.dv}, in.s0), step_state(*backend, {d.HV, d.dk, d.dv}, in.s0);
  Guarded chunked(*backend, {d.T, d.HV, d.dv}), stepped(*backend, {d.T, d.HV, d.dv});
  backend->gated_delta_rule(q.tensor(), k.tensor(), v.tensor(), g.tensor(), beta.tensor(), {64},
                            chunk_state.tensor(), chunked.tensor());
  for (std::int64_t t = 0; t < d.T; ++t) {
    Tensor out = stepped.tensor().rows(t, 1);
    backend->gated_delta_rule(q.tensor().rows(t, 1), k.tensor().rows(t, 1), v.tensor().rows(t, 1),
                              g.tensor().rows(t, 1), beta.tensor().rows(t, 1), {64}, step_state.tensor(), out);
  }
  const auto max_abs = [](const Floats& f) {
    double m = 0.0;
    for (const float x : f) m = std::max(m, double(std::abs(x)));
    return m;
  };
  const Floats a = chunked.values(), b = stepped.values(), sa = chunk_state.values(), sb = step_state.values();
  const double out_scale = max_abs(b), state_scale = max_abs(sb);
  for (std::size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 2e-6 * out_scale) << "out " << i;
  for (std::size_t i = 0; i < sa.size(); ++i) ASSERT_NEAR(sa[i], sb[i], 2e-6 * state_scale) << "state " << i;
  chunked.expect_guards_intact("gated_delta_rule chunked");
}

// ---- delta_rule_gates

// g = -exp(a_log) * softplus(a + dt_bias) with torch's threshold (softplus(x) = x above 20),
// beta = sigmoid(b); a and b span both sides of the threshold and of zero.
TEST(DeltaRuleGates, MatchReference) {
  auto backend = make_backend();
  const std::int64_t T = 33, HV = 5;
  const Floats a = random_values(sz(T * HV), 91, -25.0f, 25.0f), b = random_values(sz(T * HV), 92, -8.0f, 8.0f);
  const Floats a_log = random_values(sz(HV), 93, -4.0f, 2.8f), dt_bias = random_values(sz(HV), 94, 0.0f, 2.0f);
  Guarded at(*backend, {T, HV}, a), bt(*backend, {T, HV}, b), alt(*backend, {HV}, a_log), dtt(*backend, {HV}, dt_bias);
  Guarded g(*backend, {T, HV}), beta(*backend, {T, HV});
  backend->delta_rule_gates(at.tensor(), bt.tensor(), alt.tensor(), dtt.tensor(), g.tensor(), beta.tensor());
  Reference g_ref{std::vector<double>(sz(T * HV)), std::vector<double>(sz(T * HV))}, beta_ref = g_ref;
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t h = 0; h < HV; ++h) {
      const auto e = sz(t * HV + h);
      const double x = double(a[e]) + double(dt_bias[sz(h)]);
      const double softplus = x > 20.0 ? x : std::log1p(std::exp(x));
      g_ref.value[e] = -std::exp(double(a_log[sz(h)])) * softplus;
      g_ref.scale[e] = std::abs(g_ref.value[e]) * (1.0 + std::abs(x));  // the sum's rounding, through exp
      beta_ref.value[e] = 1.0 / (1.0 + std::exp(-double(b[e])));
      beta_ref.scale[e] = beta_ref.value[e];
    }
  }
  expect_close(g.values(), g_ref, 4e-7, "delta_rule_gates g");
  expect_close(beta.values(), beta_ref, 1e-6, "delta_rule_gates beta");
  g.expect_guards_intact("delta_rule_gates g");
  beta.expect_guards_intact("delta_rule_gates beta");
}

// ---- gated_rms_norm

struct GatedNormCase {
  Shape shape;  // x: [..., C]
};
void PrintTo(const GatedNormCase& c, std::ostream* os) { *os << format::shape_string(c.shape); }

class GatedRmsNorm : public ::testing::TestWithParam<GatedNormCase> {};

TEST_P(GatedRmsNorm, MatchesReferenceAndInPlace) {
  const Shape shape = GetParam().shape;
  const std::int64_t C = shape.back();
  auto backend = make_backend();
  const auto n = sz(format::element_count(shape));
  const Floats x = random_values(n, 71, -2.0f, 2.0f), z = random_values(n, 72, -3.0f, 3.0f);
  const Floats w = random_values(sz(C), 73, -1.5f, 1.5f);
  Guarded xt(*backend, shape, x), zt(*backend, shape, z), wt(*backend, {C}, w);
  Guarded out(*backend, shape);
  backend->gated_rms_norm(xt.tensor(), zt.tensor(), wt.tensor(), 1e-6f, out.tensor());
  const Reference ref = gated_norm_ref(widen(x), widen(z), widen(w), C, 1e-6);
  // A float32 mean of squares, 1/sqrt, exp and four products: a few ulps.
  expect_close(out.values(), ref, 4e-6, "gated_rms_norm");
  out.expect_guards_intact("gated_rms_norm");
  backend->gated_rms_norm(xt.tensor(), zt.tensor(), wt.tensor(), 1e-6f, zt.tensor());
  expect_close(zt.values(), ref, 4e-6, "gated_rms_norm in place");
  zt.expect_guards_intact("gated_rms_norm in place");
}

INSTANTIATE_TEST_SUITE_P(Shapes, GatedRmsNorm,
                         ::testing::Values(GatedNormCase{{1, 7}}, GatedNormCase{{5, 7}},
                                           GatedNormCase{{33, 64}}, GatedNormCase{{5, 4, 24}},
                                           GatedNormCase{{1, 4099}}),
                         [](const auto& test) {
                           std::string name = "S";
                           for (const std::int64_t dim : test.param.shape) name += util::concat("_", dim);
                           return name;
                         });

// ---- errors name the op

template <class F>
void expect_shape_error(F&& f, const std::string& op) {
  try {
    f();
    ADD_FAILURE() << op << ": expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("[" + op + "]"), std::string::npos) << e.what();
  }
}

TEST(GatedDeltaErrors, ShapesNameTheOp) {
  auto backend = make_backend();
  Tensor x = backend->empty({5, 7}), w = backend->empty({7, 4}), s = backend->empty({3, 7});
  Tensor out = backend->empty({5, 7}), s_bad = backend->empty({4, 7}), w_bad = backend->empty({6, 4});
  expect_shape_error([&] { backend->causal_conv1d(x, w, s_bad, out); }, "causal_conv1d");
  expect_shape_error([&] { backend->causal_conv1d(x, w_bad, s, out); }, "causal_conv1d");
  expect_shape_error([&] { backend->causal_conv1d(x, w, s, s); }, "causal_conv1d");

  Tensor q = backend->empty({3, 2, 16}), k = backend->empty({3, 2, 16}), v = backend->empty({3, 3, 24});
  Tensor g = backend->empty({3, 3}), beta = backend->empty({3, 3}), st = backend->empty({3, 16, 24});
  Tensor o = backend->empty({3, 3, 24});
  expect_shape_error([&] { backend->gated_delta_rule(q, k, v, g, beta, {}, st, o); }, "gated_delta_rule");
  Tensor v4 = backend->empty({3, 4, 24}), g4 = backend->empty({3, 4}), o4 = backend->empty({3, 4, 24});
  Tensor st_bad = backend->empty({4, 24, 16});
  expect_shape_error([&] { backend->gated_delta_rule(q, k, v4, g4, g4, {}, st_bad, o4); }, "gated_delta_rule");
  expect_shape_error([&] { backend->gated_delta_rule(q, k, v4, g4, g, {}, st, o4); }, "gated_delta_rule");

  Tensor a_log = backend->empty({3}), a_log4 = backend->empty({4});
  expect_shape_error([&] { backend->delta_rule_gates(g, g, a_log4, a_log, beta, st); }, "delta_rule_gates");
  expect_shape_error([&] { backend->delta_rule_gates(g, g4, a_log, a_log, beta, g); }, "delta_rule_gates");

  Tensor z6 = backend->empty({5, 6}), w7 = backend->empty({7}), w6 = backend->empty({6});
  expect_shape_error([&] { backend->gated_rms_norm(x, z6, w7, 1e-6f, out); }, "gated_rms_norm");
  expect_shape_error([&] { backend->gated_rms_norm(x, x, w6, 1e-6f, out); }, "gated_rms_norm");
}

}  // namespace
}  // namespace moeflux::test
