// The Gated DeltaNet token mixer of Qwen3-Next and Qwen3.5 (transformers' Qwen3NextGatedDeltaNet,
// Qwen3_5MoeGatedDeltaNet): projections, causal depthwise conv over [q | k | v], gates, the gated
// delta rule with a float32 state per value head, gated RMSNorm, out_proj; a pre-norm residual block (pre_norm.h).
#pragma once

#include <cstdint>

#include "moeflux/arch/blocks/pre_norm.h"
#include "moeflux/backend/backend.h"

namespace moeflux::arch {

struct DeltaNetConfig {
  int n_key_heads = 0;    // HK
  int n_value_heads = 0;  // HV, a multiple of HK: key head j serves value heads j*r .. j*r + r-1
  int key_dim = 0;        // dk
  int value_dim = 0;      // dv
  int conv_kernel = 0;    // K
  float norm_eps = 1e-6f;
  // Qwen3-Next: in_proj_qkvz and in_proj_ba, grouped per key head ([q k v z] and [b a] per group).
  // Qwen3.5: in_proj_qkv (already [q | k | v]), in_proj_z, in_proj_b, in_proj_a.
  bool grouped_projections = false;
  backend::DeltaRuleOptions rule;

  std::int64_t key_width() const { return std::int64_t{n_key_heads} * key_dim; }        // Kd
  std::int64_t value_width() const { return std::int64_t{n_value_heads} * value_dim; }  // Vd
  std::int64_t conv_channels() const { return 2 * key_width() + value_width(); }
};

struct DeltaNetWeights {
  backend::Tensor in_proj_qkvz, in_proj_ba;  // grouped: [2Kd + 2Vd, H], [2HV, H]
  backend::Tensor in_proj_qkv, in_proj_z, in_proj_b, in_proj_a;  // split: [2Kd + Vd, H], [Vd, H], [HV, H] x2
  backend::Tensor conv;                      // conv1d.weight [C, 1, K] viewed as [C, K]
  backend::Tensor dt_bias, a_log;            // [HV]
  backend::Tensor norm;                      // [dv], plain weight
  backend::Tensor out_proj;                  // [H, Vd]
};

// One layer's recurrent memory: the last K-1 conv inputs and the delta rule's state.
struct DeltaNetState {
  backend::Tensor conv;       // [K-1, C], oldest first
  backend::Tensor recurrent;  // [HV, dk, dv]
};

// Allocates a state of the right shapes (contents unspecified).
DeltaNetState make_delta_net_state(backend::Backend& backend, const DeltaNetConfig& config);
// dst = src, or zeros when src is null (the state at the start of a sequence).
void copy_delta_net_state(backend::Backend& backend, const DeltaNetState* src, DeltaNetState& dst);

// x += delta_net(rms_norm(x)) for T tokens after those `state` has seen, and advances it.
void delta_net_block(backend::Backend& backend, const DeltaNetConfig& config, const DeltaNetWeights& weights,
                     DeltaNetState& state, const PreNorm& norm, backend::Tensor& x);

}  // namespace moeflux::arch
