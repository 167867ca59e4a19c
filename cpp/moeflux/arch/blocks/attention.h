// Grouped-query self-attention with optional per-head q/k RMSNorm and RoPE, and its KV cache
// (Qwen3-MoE; Qwen2-MoE without the norms; Qwen3-Next / Qwen3.5 with zero-centered norms, partial
// rotary and a sigmoid output gate), a pre-norm residual block (pre_norm.h).
#pragma once

#include <cstdint>
#include <span>

#include "moeflux/arch/blocks/pre_norm.h"
#include "moeflux/backend/backend.h"

namespace moeflux::arch {

struct AttentionConfig {
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  float norm_eps = 1e-6f;
  bool qk_norm = true;               // per-head RMSNorm of q and k over head_dim
  bool zero_centered_qk_norm = false;  // those norms apply (1 + w)
  // q_proj [nh*2D, H] gives per head [query D | gate D]; the output is multiplied by sigmoid(gate)
  // before o_proj.
  bool output_gate = false;
  backend::RopeOptions rope;
  std::int64_t sliding_window = 0;   // 0: full causal attention
};

struct AttentionWeights {
  // [nh*D, H] (or [nh*2D, H] with output_gate), [nkv*D, H], [nkv*D, H], [H, nh*D]
  backend::Tensor q_proj, k_proj, v_proj, o_proj;
  backend::Tensor q_norm, k_norm;                  // [D] each, when qk_norm
};

// Keys and values of every position seen, [capacity, nkv, D]; grows by doubling.
struct KvCache {
  backend::Tensor k, v;
  std::int64_t capacity = 0;
};

// Grows `cache` to hold at least `rows` positions, keeping the first `kept` rows.
void reserve_kv_cache(backend::Backend& backend, const AttentionConfig& config, KvCache& cache,
                      std::int64_t rows, std::int64_t kept);

// x += attention(rms_norm(x)) for T tokens at positions n_past..; appends their keys and values
// to `cache`. With `folded` (x times the norm's weight, written by the step before: backend.h's
// FoldedNorm), the block projects it and its attention scales by 1 / rms(x) instead; not with an
// output gate.
void attention_block(backend::Backend& backend, const AttentionConfig& config,
                     const AttentionWeights& weights, KvCache& cache, const PreNorm& norm,
                     std::span<const std::int32_t> positions, std::int64_t n_past, backend::Tensor& x,
                     const backend::Tensor* folded = nullptr);

// inv_freq[i] = theta^(-2i / rotary_dim), computed as transformers does (float32 of a double power).
backend::RopeOptions default_rope(double theta, int rotary_dim);

}  // namespace moeflux::arch
