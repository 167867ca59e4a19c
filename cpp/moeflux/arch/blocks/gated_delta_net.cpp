#include "moeflux/arch/blocks/gated_delta_net.h"

#include <vector>

namespace moeflux::arch {

using backend::Tensor;

DeltaNetState make_delta_net_state(backend::Backend& backend, const DeltaNetConfig& config) {
  DeltaNetState state;
  state.conv = backend.empty({config.conv_kernel - 1, config.conv_channels()});
  state.recurrent = backend.empty({config.n_value_heads, config.key_dim, config.value_dim});
  return state;
}

void copy_delta_net_state(backend::Backend& backend, const DeltaNetState* src, DeltaNetState& dst) {
  for (const auto member : {&DeltaNetState::conv, &DeltaNetState::recurrent}) {
    Tensor& to = dst.*member;
    if (to.numel() == 0) continue;
    Tensor rows = to.view({to.dim(0), to.numel() / to.dim(0)});
    if (src) {
      const Tensor& from = src->*member;
      backend.write_rows(from.view(rows.shape()), rows, 0);
    } else {
      backend.upload(std::vector<float>(static_cast<std::size_t>(to.numel()), 0.0f), rows);
    }
  }
}

void delta_net_block(backend::Backend& backend, const DeltaNetConfig& config, const DeltaNetWeights& weights,
                     DeltaNetState& state, const PreNorm& norm, Tensor& x) {
  const std::int64_t T = x.dim(0);
  const std::int64_t HK = config.n_key_heads, HV = config.n_value_heads, dk = config.key_dim, dv = config.value_dim;
  const std::int64_t Kd = config.key_width(), Vd = config.value_width(), C = config.conv_channels();

  // mixed = [q | k | v] (the conv's channels), z [T, Vd], b and a [T, HV]
  Tensor mixed = backend.empty({T, C});
  Tensor z = backend.empty({T, Vd});
  Tensor b = backend.empty({T, HV});
  Tensor a = backend.empty({T, HV});
  if (config.grouped_projections) {
    const std::int64_t r = HV / HK, group = 2 * dk + 2 * r * dv;
    Tensor qkvz = backend.empty({T, HK * group});
    Tensor ba = backend.empty({T, HK * 2 * r});
    const Tensor ws[] = {weights.in_proj_qkvz, weights.in_proj_ba};
    Tensor ys[] = {qkvz, ba};
    backend.norm_matmul(x, norm.weight, norm.options, ws, ys, nullptr);
    backend.copy_column_blocks(qkvz, {HK, group, 0, dk, 0}, mixed);
    backend.copy_column_blocks(qkvz, {HK, group, dk, dk, Kd}, mixed);
    backend.copy_column_blocks(qkvz, {HK, group, 2 * dk, r * dv, 2 * Kd}, mixed);
    backend.copy_column_blocks(qkvz, {HK, group, 2 * dk + r * dv, r * dv, 0}, z);
    backend.copy_column_blocks(ba, {HK, 2 * r, 0, r, 0}, b);
    backend.copy_column_blocks(ba, {HK, 2 * r, r, r, 0}, a);
  } else {
    const Tensor ws[] = {weights.in_proj_qkv, weights.in_proj_z, weights.in_proj_b, weights.in_proj_a};
    Tensor ys[] = {mixed, z, b, a};
    backend.norm_matmul(x, norm.weight, norm.options, ws, ys, nullptr);
  }

  backend.causal_conv1d(mixed, weights.conv, state.conv, mixed);
  Tensor q = backend.empty({T, HK, dk});
  Tensor k = backend.empty({T, HK, dk});
  Tensor v = backend.empty({T, HV, dv});
  Tensor q_rows = q.view({T, Kd}), k_rows = k.view({T, Kd}), v_rows = v.view({T, Vd});
  backend.copy_column_blocks(mixed, {1, C, 0, Kd, 0}, q_rows);
  backend.copy_column_blocks(mixed, {1, C, Kd, Kd, 0}, k_rows);
  backend.copy_column_blocks(mixed, {1, C, 2 * Kd, Vd, 0}, v_rows);

  Tensor g = backend.empty({T, HV});
  Tensor beta = backend.empty({T, HV});
  backend.delta_rule_gates(a, b, weights.a_log, weights.dt_bias, g, beta);
  Tensor core = backend.empty({T, HV, dv});
  backend.gated_delta_rule(q, k, v, g, beta, config.rule, state.recurrent, core);

  Tensor core_heads = core.view({T * HV, dv});
  backend.gated_rms_norm(core_heads, z.view({T * HV, dv}), weights.norm, config.norm_eps, core_heads);
  backend.matmul_add(core.view({T, Vd}), weights.out_proj, x);
}

}  // namespace moeflux::arch
