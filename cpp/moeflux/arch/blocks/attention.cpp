#include "moeflux/arch/blocks/attention.h"

#include <algorithm>
#include <cmath>

#include "moeflux/util/error.h"

namespace moeflux::arch {

using backend::Tensor;

backend::RopeOptions default_rope(double theta, int rotary_dim) {
  backend::RopeOptions rope;
  rope.rotary_dim = rotary_dim;
  // transformers: 1 / theta ** (arange(0, d, 2, int64).float() / d), all in float32.
  const float base = static_cast<float>(theta);
  for (int i = 0; i < rotary_dim / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(rotary_dim);
    rope.inv_freq.push_back(1.0f / std::pow(base, exponent));
  }
  return rope;
}

void reserve_kv_cache(backend::Backend& backend, const AttentionConfig& config, KvCache& cache,
                      std::int64_t rows, std::int64_t kept) {
  if (rows <= cache.capacity) return;
  const std::int64_t capacity = std::max<std::int64_t>({rows, 2 * cache.capacity, 256});
  const std::int64_t row = static_cast<std::int64_t>(config.n_kv_heads) * config.head_dim;
  Tensor k = backend.empty({capacity, row});
  Tensor v = backend.empty({capacity, row});
  if (kept > 0) {
    backend.write_rows(cache.k.rows(0, kept), k, 0);
    backend.write_rows(cache.v.rows(0, kept), v, 0);
  }
  cache.k = std::move(k);
  cache.v = std::move(v);
  cache.capacity = capacity;
}

void attention_block(backend::Backend& backend, const AttentionConfig& config,
                     const AttentionWeights& weights, KvCache& cache, const PreNorm& norm,
                     std::span<const std::int32_t> positions, std::int64_t n_past, Tensor& x,
                     const Tensor* folded) {
  const std::int64_t T = x.dim(0);
  const std::int64_t nh = config.n_heads, nkv = config.n_kv_heads, D = config.head_dim;
  Tensor q = backend.empty({T, nh * D});
  Tensor k = backend.empty({T, nkv * D});
  Tensor v = backend.empty({T, nkv * D});
  Tensor gate;
  // With an output gate, q_proj gives per head [query | gate] rows, split below.
  Tensor q_and_gate = config.output_gate ? backend.empty({T, nh * 2 * D}) : q;
  const Tensor ws[] = {weights.q_proj, weights.k_proj, weights.v_proj};
  Tensor ys[] = {q_and_gate, k, v};
  if (folded != nullptr) {
    MF_ASSERT(!config.output_gate, "a folded norm with an output gate");  // the gate would need the scale too
    for (std::size_t i = 0; i < 3; ++i) backend.matmul(*folded, ws[i], ys[i]);
  } else {
    backend.norm_matmul(x, norm.weight, norm.options, ws, ys, nullptr);
  }
  if (config.output_gate) {
    gate = backend.empty({T, nh * D});
    backend.copy_column_blocks(q_and_gate, {nh, 2 * D, 0, D, 0}, q);
    backend.copy_column_blocks(q_and_gate, {nh, 2 * D, D, D, 0}, gate);
  }

  Tensor q3 = q.view({T, nh, D});
  Tensor k3 = k.view({T, nkv, D});
  reserve_kv_cache(backend, config, cache, n_past + T, n_past);
  const backend::NormOptions qk_norm{config.norm_eps, config.zero_centered_qk_norm};
  Tensor attn = backend.empty({T, nh, D});
  backend::AttentionOptions options;
  options.scale = 1.0f / std::sqrt(static_cast<float>(D));
  options.n_past = n_past;
  options.sliding_window = config.sliding_window;
  const backend::InputScale input_scale{x, norm.options.eps};
  backend.attention_with_inputs(q3, k3, v, config.qk_norm ? weights.q_norm : Tensor(),
                                config.qk_norm ? weights.k_norm : Tensor(), qk_norm, positions, config.rope, cache.k,
                                cache.v, options, attn, folded != nullptr ? &input_scale : nullptr);
  Tensor attn_rows = attn.view({T, nh * D});
  if (config.output_gate) backend.sigmoid_mul(gate, attn_rows, attn_rows);
  backend.matmul_add(attn_rows, weights.o_proj, x);
}

}  // namespace moeflux::arch
