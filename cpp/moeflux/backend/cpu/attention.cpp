// attention: causal softmax attention of T query rows over a KV cache, grouped KV heads, optional
// sliding window, as transformers' eager_attention_forward in float32: s = (q.k) * scale,
// p = exp(s - max) * (1 / sum), out = sum_j p_j v_j. Work splits over (row, head) items.
#include <algorithm>
#include <cmath>
#include <vector>

#include "moeflux/backend/cpu/cpu_backend.h"
#include "moeflux/backend/cpu/kernels.h"
#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/util/error.h"

namespace moeflux::backend::cpu {
namespace {

// Below this many multiply-adds one thread is faster than waking workers.
constexpr std::int64_t kParallelWork = std::int64_t{1} << 18;

// One output row: query row t, head h. `scores` holds n_past + T floats.
void attend_row(const float* q, const float* k, const float* v, const AttentionDims& d,
                const AttentionOptions& o, std::int64_t t, std::int64_t h, float* scores,
                float* out) {
  const std::int64_t position = o.n_past + t;
  const std::int64_t first =
      o.sliding_window > 0 ? std::max<std::int64_t>(0, position - o.sliding_window + 1) : 0;
  const std::int64_t kv_head = h / (d.nh / d.nkv);
  const float* q_row = q + (t * d.nh + h) * d.D;

  float max_score = -INFINITY;
  for (std::int64_t j = first; j <= position; ++j) {
    const float s = dot(q_row, k + (j * d.nkv + kv_head) * d.D, d.D) * o.scale;
    scores[j - first] = s;
    max_score = std::max(max_score, s);
  }
  const std::int64_t n = position - first + 1;
  float sum = 0.0f;
  for (std::int64_t j = 0; j < n; ++j) {
    scores[j] = std::exp(scores[j] - max_score);
    sum += scores[j];
  }
  const float inv_sum = 1.0f / sum;  // PyTorch's softmax multiplies by the reciprocal

  float* out_row = out + (t * d.nh + h) * d.Dv;
  std::fill_n(out_row, d.Dv, 0.0f);
  for (std::int64_t j = 0; j < n; ++j) {
    const float p = scores[j] * inv_sum;
    const float* v_row = v + ((first + j) * d.nkv + kv_head) * d.Dv;
    for (std::int64_t c = 0; c < d.Dv; ++c) out_row[c] += p * v_row[c];
  }
}

}  // namespace

void attention(const float* q, const float* k, const float* v, const AttentionDims& dims,
               const AttentionOptions& options, ThreadPool& pool, AlignedBuffer& scratch, float* out) {
  const std::int64_t items = dims.T * dims.nh;
  const std::int64_t keys = options.n_past + dims.T;
  if (items == 0) return;
  // Score rows are allocated here, one per thread, so that workers never allocate (nor throw).
  float* scores = scratch.reserve(pool.size() * keys);
  const auto item = [&](std::int64_t i, int thread) {
    attend_row(q, k, v, dims, options, i / dims.nh, i % dims.nh, scores + thread * keys, out);
  };
  if (items * keys * (dims.D + dims.Dv) < kParallelWork) {
    for (std::int64_t i = 0; i < items; ++i) item(i, 0);
  } else {
    pool.run(items, item);
  }
}

void CpuBackend::attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                           const AttentionOptions& options, Tensor& out) {
  check_rank(q, 3, "attention", "q");
  check_rank(k_cache, 3, "attention", "k_cache");
  check_rank(v_cache, 3, "attention", "v_cache");
  check_rank(out, 3, "attention", "out");
  const AttentionDims dims{q.dim(0), q.dim(1), k_cache.dim(1), q.dim(2), v_cache.dim(2)};
  const std::int64_t capacity = k_cache.dim(0);
  MF_CHECK(k_cache.dim(2) == dims.D && v_cache.dim(0) == capacity && v_cache.dim(1) == dims.nkv &&
               dims.nkv > 0 && dims.nh % dims.nkv == 0,
           ShapeError, "[attention] q ", format::shape_string(q.shape()), ", k_cache ",
           format::shape_string(k_cache.shape()), ", v_cache ", format::shape_string(v_cache.shape()),
           "; expected q [T, nh, D], k_cache [capacity, nkv, D], v_cache [capacity, nkv, Dv] with "
           "nkv dividing nh");
  MF_CHECK(out.shape() == Shape({dims.T, dims.nh, dims.Dv}), ShapeError, "[attention] out ",
           format::shape_string(out.shape()), " must be [T, nh, Dv] = [", dims.T, ", ", dims.nh,
           ", ", dims.Dv, "]");
  MF_CHECK(options.n_past >= 0 && options.n_past + dims.T <= capacity, ShapeError,
           "[attention] n_past ", options.n_past, " + ", dims.T, " rows exceed the cache capacity ",
           capacity, "; write the new K/V rows into a larger cache");
  MF_CHECK(options.sliding_window >= 0, ShapeError, "[attention] sliding_window ",
           options.sliding_window, " must be 0 (none) or positive");
  check_disjoint(q, out, "attention", "q");
  check_disjoint(k_cache, out, "attention", "k_cache");
  check_disjoint(v_cache, out, "attention", "v_cache");
  cpu::attention(data_of(q, "attention", "q"), data_of(k_cache, "attention", "k_cache"),
                 data_of(v_cache, "attention", "v_cache"), dims, options, pool_, attention_scores_,
                 data_of(out, "attention", "out"));
}

}  // namespace moeflux::backend::cpu
