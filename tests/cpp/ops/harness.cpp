// The op test harness: random inputs, guarded tensors and the error-bound comparison.
#include "harness.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>

#include "moeflux/backend/cpu/cpu_backend.h"
#include "moeflux/util/error.h"

namespace moeflux::test {
namespace {

// Sentinels with recognisable, non-NaN bit patterns, so they compare bitwise.
float sentinel(std::int64_t i) { return 1.0e6f + static_cast<float>(i % 1000); }

}  // namespace

std::vector<float> random_values(std::size_t n, unsigned seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> out(n);
  for (float& v : out) v = dist(rng);
  return out;
}

Guarded::Guarded(Backend& backend, Shape shape, std::int64_t guard)
    : backend_(&backend), guard_(guard) {
  const std::int64_t n = format::element_count(shape);
  whole_ = backend.empty({guard + n + guard});
  std::vector<float> init(static_cast<std::size_t>(guard + n + guard),
                          std::numeric_limits<float>::quiet_NaN());
  for (std::int64_t i = 0; i < guard; ++i) {
    init[static_cast<std::size_t>(i)] = sentinel(i);
    init[static_cast<std::size_t>(guard + n + i)] = sentinel(guard + n + i);
  }
  backend.upload(init, whole_);
  view_ = whole_.rows(guard, n).view(std::move(shape));
}

Guarded::Guarded(Backend& backend, Shape shape, std::span<const float> values, std::int64_t guard)
    : Guarded(backend, std::move(shape), guard) {
  backend.upload(values, view_);
}

std::vector<float> Guarded::values() const {
  std::vector<float> out(static_cast<std::size_t>(view_.numel()));
  backend_->download(view_, out);
  return out;
}

void Guarded::expect_guards_intact(const std::string& what) const {
  std::vector<float> all(static_cast<std::size_t>(whole_.numel()));
  backend_->download(whole_, all);
  const std::int64_t n = view_.numel();
  int bad = 0;
  for (std::int64_t i = 0; i < guard_; ++i) {
    for (const std::int64_t at : {i, guard_ + n + i}) {
      const float want = sentinel(at);
      if (std::memcmp(&all[static_cast<std::size_t>(at)], &want, sizeof(float)) != 0) ++bad;
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " guard elements around the tensor were overwritten";
}

void expect_close(std::span<const float> got, const Reference& ref, double rtol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), ref.value.size()) << what;
  ASSERT_EQ(ref.scale.size(), ref.value.size()) << what;
  std::size_t failures = 0;
  std::ostringstream report;
  double worst = 0.0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = static_cast<double>(got[i]);
    const double err = std::abs(g - ref.value[i]);
    const double bound = rtol * ref.scale[i];
    if (ref.scale[i] > 0.0) worst = std::max(worst, err / ref.scale[i]);
    if (!std::isfinite(g) || !(err <= bound)) {
      if (failures < 5) {
        report << "\n  [" << i << "] got " << g << ", reference " << ref.value[i] << ", error "
               << err << " > " << bound;
      }
      ++failures;
    }
  }
  EXPECT_EQ(failures, 0u) << what << ": " << failures << " of " << got.size()
                          << " elements out of bounds (rtol " << rtol << ")" << report.str();
  ::testing::Test::RecordProperty(what + "_worst_relative_error", util::concat(worst));
}

std::unique_ptr<Backend> make_backend(int threads) {
  backend::BackendOptions options;
  options.threads = threads;
  return backend::create_backend(options);
}

std::unique_ptr<Backend> make_cpu_backend(int threads, backend::cpu::Simd simd) {
  backend::BackendOptions options;
  options.threads = threads;
  return std::make_unique<backend::cpu::CpuBackend>(options, simd);
}

backend::cpu::Simd backend_simd(const Backend& backend) {
  return dynamic_cast<const backend::cpu::CpuBackend&>(backend).simd();
}

}  // namespace moeflux::test
