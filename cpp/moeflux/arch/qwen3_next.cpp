// Qwen3-Next / Qwen3.5-MoE, mirroring transformers' Qwen3NextForCausalLM and Qwen3_5MoeForCausalLM.
// Hidden states are [T, H] float32; weights keep their HF names (docs/FORMAT.md). Layer L mixes
// tokens with gated full attention or a Gated DeltaNet (layer_types), then runs a MoE block (or a
// dense MLP: Qwen3-Next's mlp_only_layers / decoder_sparse_step). Norms apply (1 + w).
#include "moeflux/arch/qwen3_next.h"

#include <algorithm>
#include <numeric>
#include <string>
#include <utility>

#include "moeflux/arch/blocks/attention.h"
#include "moeflux/arch/blocks/gated_delta_net.h"
#include "moeflux/arch/blocks/lm_head.h"
#include "moeflux/arch/blocks/moe_block.h"
#include "moeflux/arch/config_reader.h"

namespace moeflux::arch::qwen3_next {
namespace {

using backend::Tensor;

// ---- hyperparameters (config.json, or its text_config)
struct HParams {
  std::string model_type;
  int vocab = 0, hidden = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, rotary_dim = 0;
  int intermediate = 0, moe_intermediate = 0, shared_intermediate = 0;
  int n_experts = 0, k = 0;
  bool norm_topk_prob = true, tied = false;
  float eps = 1e-6f;
  double rope_theta = 10000.0;
  std::int64_t max_position = 0;
  std::vector<bool> full_attention;  // per layer: gated attention, else Gated DeltaNet
  std::vector<bool> is_moe;          // per layer
  DeltaNetConfig delta;
};

// partial_rotary_factor: under rope_parameters (transformers v5) or top-level (older configs);
// transformers' default is 0.25.
double partial_rotary_factor(const ConfigReader& c) {
  const auto rope = c.json().find("rope_parameters");
  if (rope != c.json().end() && rope->is_object() && rope->contains("partial_rotary_factor"))
    return rope->at("partial_rotary_factor").get<double>();
  return c.get_or<double>("partial_rotary_factor", 0.25);
}

void check_rope_type(const ConfigReader& c, const std::string& model_type) {
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    const auto rope = c.json().find(key);
    if (rope == c.json().end() || !rope->is_object()) continue;
    // mrope_section only regroups frequencies across T/H/W positions, which are equal for text.
    const std::string type = rope->value("rope_type", rope->value("type", "default"));
    MF_CHECK(type == "default", Unsupported, "[read_config] rope type \"", type, "\" is not supported for ",
             model_type);
  }
}

HParams read_hparams(const nlohmann::json& json) {
  const ConfigReader top(json, "config.json");
  const bool multimodal = &text_config(json) != &json;
  const ConfigReader c(text_config(json), multimodal ? "config.json text_config" : "config.json");
  HParams p;
  p.model_type = top.get<std::string>("model_type");
  const bool qwen3_5 = p.model_type != "qwen3_next";
  p.vocab = c.positive("vocab_size");
  p.hidden = c.positive("hidden_size");
  p.n_layers = c.positive("num_hidden_layers");
  p.n_heads = c.positive("num_attention_heads");
  p.n_kv_heads = c.has("num_key_value_heads") ? c.positive("num_key_value_heads") : p.n_heads;
  MF_CHECK(p.n_heads % p.n_kv_heads == 0, ConfigError, "[read_config] num_attention_heads (", p.n_heads,
           ") is not a multiple of num_key_value_heads (", p.n_kv_heads, ")");
  p.head_dim = c.has("head_dim") ? c.positive("head_dim") : p.hidden / p.n_heads;
  p.rotary_dim = static_cast<int>(p.head_dim * partial_rotary_factor(c));
  MF_CHECK(p.rotary_dim > 0 && p.rotary_dim % 2 == 0 && p.rotary_dim <= p.head_dim, ConfigError,
           "[read_config] partial_rotary_factor gives ", p.rotary_dim, " rotary channels of head_dim ",
           p.head_dim, "; it must give an even number between 2 and head_dim");
  p.eps = static_cast<float>(c.get_or<double>("rms_norm_eps", 1e-6));
  p.rope_theta = c.rope_theta(10000.0);
  check_rope_type(c, p.model_type);
  p.max_position = c.get_or<std::int64_t>("max_position_embeddings", 32768);
  p.tied = top.has("tie_word_embeddings") ? top.get<bool>("tie_word_embeddings")
                                          : c.get_or<bool>("tie_word_embeddings", false);
  MF_CHECK(!c.get_or<bool>("attention_bias", false), Unsupported,
           "[read_config] attention projections with bias are not supported yet (config.json sets attention_bias)");
  const std::string act = c.get_or<std::string>("hidden_act", "silu");
  MF_CHECK(act == "silu", Unsupported, "[read_config] hidden_act \"", act, "\" is not supported for ",
           p.model_type, "; only silu");

  p.n_experts = c.positive("num_experts");
  p.k = c.positive("num_experts_per_tok");
  MF_CHECK(p.k <= p.n_experts, ConfigError, "[read_config] num_experts_per_tok (", p.k,
           ") exceeds num_experts (", p.n_experts, ")");
  p.moe_intermediate = c.positive("moe_intermediate_size");
  p.shared_intermediate = c.positive("shared_expert_intermediate_size");
  p.norm_topk_prob = qwen3_5 || c.get_or<bool>("norm_topk_prob", true);  // Qwen3.5 always renormalises

  DeltaNetConfig& d = p.delta;
  d.n_key_heads = c.positive("linear_num_key_heads");
  d.n_value_heads = c.positive("linear_num_value_heads");
  d.key_dim = c.positive("linear_key_head_dim");
  d.value_dim = c.positive("linear_value_head_dim");
  d.conv_kernel = c.positive("linear_conv_kernel_dim");
  d.norm_eps = p.eps;
  d.grouped_projections = !qwen3_5;
  MF_CHECK(d.n_value_heads % d.n_key_heads == 0, ConfigError, "[read_config] linear_num_value_heads (",
           d.n_value_heads, ") is not a multiple of linear_num_key_heads (", d.n_key_heads,
           "); each key head of the Gated DeltaNet serves a whole group of value heads");

  // layer_types, else every full_attention_interval-th layer is full (transformers' default 4).
  const auto types = c.get_or<std::vector<std::string>>("layer_types", {});
  const int interval = c.get_or<int>("full_attention_interval", 4);
  MF_CHECK(types.empty() || static_cast<int>(types.size()) == p.n_layers, ConfigError, "[read_config] layer_types has ",
           types.size(), " entries for ", p.n_layers, " layers (num_hidden_layers)");
  MF_CHECK(!types.empty() || interval > 0, ConfigError, "[read_config] full_attention_interval must be positive");
  const int step = qwen3_5 ? 1 : c.get_or<int>("decoder_sparse_step", 1);
  const auto mlp_only = qwen3_5 ? std::vector<int>{} : c.get_or<std::vector<int>>("mlp_only_layers", {});
  for (int L = 0; L < p.n_layers; ++L) {
    const std::string type = types.empty() ? ((L + 1) % interval == 0 ? "full_attention" : "linear_attention")
                                           : types[static_cast<std::size_t>(L)];
    MF_CHECK(type == "full_attention" || type == "linear_attention", ConfigError, "[read_config] layer_types[", L,
             "] is \"", type, "\"; expected \"full_attention\" or \"linear_attention\"");
    p.full_attention.push_back(type == "full_attention");
    const bool dense = std::find(mlp_only.begin(), mlp_only.end(), L) != mlp_only.end();
    p.is_moe.push_back(!dense && step > 0 && (L + 1) % step == 0);
  }
  if (std::find(p.is_moe.begin(), p.is_moe.end(), false) != p.is_moe.end())
    p.intermediate = c.positive("intermediate_size");
  return p;
}

std::string layer_name(int L, const std::string& rest) {
  return "model.layers." + std::to_string(L) + "." + rest;
}

// ---- weights
format::ModelLayout make_layout(const HParams& p) {
  using S = format::Shape;
  const std::int64_t H = p.hidden, D = p.head_dim;
  const DeltaNetConfig& d = p.delta;
  const std::int64_t HV = d.n_value_heads, Kd = d.key_width(), Vd = d.value_width();
  format::ModelLayout layout;
  // Norms, routers, gates' parameters and the conv stay float; projections may be quantized.
  auto dense = [&](std::string name, S shape) { layout.dense.push_back({std::move(name), std::move(shape), true, false}); };
  auto matrix = [&](std::string name, S shape) { layout.dense.push_back({std::move(name), std::move(shape), true, true}); };
  matrix("model.embed_tokens.weight", {p.vocab, H});
  for (int L = 0; L < p.n_layers; ++L) {
    dense(layer_name(L, "input_layernorm.weight"), {H});
    dense(layer_name(L, "post_attention_layernorm.weight"), {H});
    if (p.full_attention[L]) {
      matrix(layer_name(L, "self_attn.q_proj.weight"), {p.n_heads * 2 * D, H});  // per head [query | gate]
      matrix(layer_name(L, "self_attn.k_proj.weight"), {p.n_kv_heads * D, H});
      matrix(layer_name(L, "self_attn.v_proj.weight"), {p.n_kv_heads * D, H});
      matrix(layer_name(L, "self_attn.o_proj.weight"), {H, p.n_heads * D});
      dense(layer_name(L, "self_attn.q_norm.weight"), {D});
      dense(layer_name(L, "self_attn.k_norm.weight"), {D});
    } else {
      if (d.grouped_projections) {
        matrix(layer_name(L, "linear_attn.in_proj_qkvz.weight"), {2 * Kd + 2 * Vd, H});
        matrix(layer_name(L, "linear_attn.in_proj_ba.weight"), {2 * HV, H});
      } else {
        matrix(layer_name(L, "linear_attn.in_proj_qkv.weight"), {2 * Kd + Vd, H});
        matrix(layer_name(L, "linear_attn.in_proj_z.weight"), {Vd, H});
        matrix(layer_name(L, "linear_attn.in_proj_b.weight"), {HV, H});
        matrix(layer_name(L, "linear_attn.in_proj_a.weight"), {HV, H});
      }
      dense(layer_name(L, "linear_attn.conv1d.weight"), {d.conv_channels(), 1, d.conv_kernel});
      dense(layer_name(L, "linear_attn.dt_bias"), {HV});
      dense(layer_name(L, "linear_attn.A_log"), {HV});
      dense(layer_name(L, "linear_attn.norm.weight"), {d.value_dim});
      matrix(layer_name(L, "linear_attn.out_proj.weight"), {H, Vd});
    }
    if (!p.is_moe[L]) {
      matrix(layer_name(L, "mlp.gate_proj.weight"), {p.intermediate, H});
      matrix(layer_name(L, "mlp.up_proj.weight"), {p.intermediate, H});
      matrix(layer_name(L, "mlp.down_proj.weight"), {H, p.intermediate});
      continue;
    }
    dense(layer_name(L, "mlp.gate.weight"), {p.n_experts, H});
    matrix(layer_name(L, "mlp.shared_expert.gate_proj.weight"), {p.shared_intermediate, H});
    matrix(layer_name(L, "mlp.shared_expert.up_proj.weight"), {p.shared_intermediate, H});
    matrix(layer_name(L, "mlp.shared_expert.down_proj.weight"), {H, p.shared_intermediate});
    dense(layer_name(L, "mlp.shared_expert_gate.weight"), {1, H});
    const std::int64_t I = p.moe_intermediate;
    layout.expert_layers.push_back({L, p.n_experts, layer_name(L, "mlp.experts"),
                                    {{"gate_proj", {I, H}}, {"up_proj", {I, H}}, {"down_proj", {H, I}}}});
  }
  dense("model.norm.weight", {H});
  if (!p.tied) matrix("lm_head.weight", {p.vocab, H});
  return layout;
}

struct LayerWeights {
  Tensor input_norm, post_norm;
  bool full_attention = false;
  AttentionWeights attn;
  DeltaNetWeights delta;
  bool is_moe = false;
  MlpWeights mlp;
  MoeWeights moe;
};

// KV caches of the attention layers and two Gated DeltaNet states per linear layer: a forward
// works on `working` (copied from `committed`, or zeros at position 0) and swaps them only once it
// succeeded, so a failed call leaves the session as it was.
class HybridState : public State {
 public:
  explicit HybridState(int n_layers)
      : caches(static_cast<std::size_t>(n_layers)), committed(caches.size()), working(caches.size()) {}
  void reset() override { n_past = 0; }  // position 0 starts from zero states and overwrites the caches
  // Attention layers' keys and values of positions [0, n_past); linear layers' conv and recurrent states.
  std::vector<StateTensor> tensors() override {
    std::vector<StateTensor> out;
    if (n_past == 0) return out;
    for (std::size_t L = 0; L < caches.size(); ++L) {
      const std::string layer = "layers." + std::to_string(L);
      if (committed[L].recurrent.defined()) {
        out.push_back({layer + ".conv", committed[L].conv});
        out.push_back({layer + ".recurrent", committed[L].recurrent});
      } else {
        out.push_back({layer + ".k", caches[L].k.rows(0, n_past)});
        out.push_back({layer + ".v", caches[L].v.rows(0, n_past)});
      }
    }
    return out;
  }
  bool can_rewind() const override { return false; }  // the recurrent states hold every position
  std::vector<KvCache> caches;
  std::vector<DeltaNetState> committed, working;
};

// ---- forward pass
class Qwen3Next : public Model {
 public:
  Qwen3Next(const ModelContext& context, HParams p) : context_(context), p_(std::move(p)) {
    backend::Backend& b = *context_.backend;
    auto load = [&](const std::string& name) { return b.resident(context_.packed->dense(name)); };
    embed_ = load("model.embed_tokens.weight");
    final_norm_ = load("model.norm.weight");
    lm_head_ = p_.tied ? embed_ : load("lm_head.weight");
    const DeltaNetConfig& d = p_.delta;
    for (int L = 0; L < p_.n_layers; ++L) {
      LayerWeights w;
      auto layer = [&](const std::string& rest) { return load(layer_name(L, rest)); };
      w.input_norm = layer("input_layernorm.weight");
      w.post_norm = layer("post_attention_layernorm.weight");
      w.full_attention = p_.full_attention[L];
      if (w.full_attention) {
        w.attn = {layer("self_attn.q_proj.weight"), layer("self_attn.k_proj.weight"),
                  layer("self_attn.v_proj.weight"), layer("self_attn.o_proj.weight"),
                  layer("self_attn.q_norm.weight"), layer("self_attn.k_norm.weight")};
      } else {
        if (d.grouped_projections) {
          w.delta.in_proj_qkvz = layer("linear_attn.in_proj_qkvz.weight");
          w.delta.in_proj_ba = layer("linear_attn.in_proj_ba.weight");
        } else {
          w.delta.in_proj_qkv = layer("linear_attn.in_proj_qkv.weight");
          w.delta.in_proj_z = layer("linear_attn.in_proj_z.weight");
          w.delta.in_proj_b = layer("linear_attn.in_proj_b.weight");
          w.delta.in_proj_a = layer("linear_attn.in_proj_a.weight");
        }
        w.delta.conv = layer("linear_attn.conv1d.weight").view({d.conv_channels(), d.conv_kernel});
        w.delta.dt_bias = layer("linear_attn.dt_bias");
        w.delta.a_log = layer("linear_attn.A_log");
        w.delta.norm = layer("linear_attn.norm.weight");
        w.delta.out_proj = layer("linear_attn.out_proj.weight");
      }
      w.is_moe = p_.is_moe[L];
      if (!w.is_moe) {
        w.mlp = {layer("mlp.gate_proj.weight"), layer("mlp.up_proj.weight"), layer("mlp.down_proj.weight")};
      } else {
        w.moe.router = layer("mlp.gate.weight");
        w.moe.shared_expert = {layer("mlp.shared_expert.gate_proj.weight"), layer("mlp.shared_expert.up_proj.weight"),
                               layer("mlp.shared_expert.down_proj.weight")};
        w.moe.shared_expert_gate = layer("mlp.shared_expert_gate.weight");
        info_.moe_layers.push_back(L);
      }
      layers_.push_back(std::move(w));
    }
    k_ = context_.options.experts_per_token.value_or(p_.k);
    MF_CHECK(k_ >= 1 && k_ <= p_.n_experts, ConfigError, "[open_model] experts_per_token=", k_,
             " must be between 1 and the model's ", p_.n_experts, " experts");
    info_.model_type = p_.model_type;
    info_.n_layers = p_.n_layers;
    info_.hidden_size = p_.hidden;
    info_.vocab_size = p_.vocab;
    info_.n_experts = p_.n_experts;
    info_.experts_per_token = k_;
    info_.max_position = p_.max_position;
  }

  const ModelInfo& info() const override { return info_; }

  std::unique_ptr<State> new_state() const override {
    auto state = std::make_unique<HybridState>(p_.n_layers);
    for (int L = 0; L < p_.n_layers; ++L) {
      if (p_.full_attention[L]) continue;
      const auto l = static_cast<std::size_t>(L);
      state->committed[l] = make_delta_net_state(*context_.backend, p_.delta);
      state->working[l] = make_delta_net_state(*context_.backend, p_.delta);
    }
    return state;
  }

  void reserve_state(State& state_base, std::int64_t n_past) override {
    auto& state = static_cast<HybridState&>(state_base);
    for (int L = 0; L < p_.n_layers; ++L)
      if (p_.full_attention[L])
        reserve_kv_cache(*context_.backend, attention_config(), state.caches[static_cast<std::size_t>(L)], n_past, 0);
  }

  void forward(State& state_base, std::span<const std::int32_t> tokens, const ForwardOptions& options,
               std::vector<float>& logits, RoutingRecord* routing) override {
    auto& state = static_cast<HybridState&>(state_base);
    backend::Backend& b = *context_.backend;
    const auto T = static_cast<std::int64_t>(tokens.size());
    const std::int64_t H = p_.hidden;
    const auto n_moe = static_cast<std::int64_t>(info_.moe_layers.size());
    std::vector<std::int32_t> positions(tokens.size());
    std::iota(positions.begin(), positions.end(), static_cast<std::int32_t>(state.n_past));
    Tensor x = b.empty({T, H});  // the residual stream
    b.embedding(embed_, tokens, x);
    const backend::NormOptions norm{p_.eps, true};
    ForwardRouting moe_routing(b, T, n_moe, k_, p_.n_experts, routing != nullptr && options.record_router_logits);
    std::int64_t moe_index = 0;
    for (int L = 0; L < p_.n_layers; ++L) {
      const LayerWeights& w = layers_[static_cast<std::size_t>(L)];
      const auto l = static_cast<std::size_t>(L);
      const PreNorm mixer_norm{w.input_norm, norm}, mlp_norm{w.post_norm, norm};
      if (w.full_attention) {
        attention_block(b, attention_config(), w.attn, state.caches[l], mixer_norm, positions, state.n_past, x);
      } else {
        copy_delta_net_state(b, state.n_past == 0 ? nullptr : &state.committed[l], state.working[l]);
        delta_net_block(b, p_.delta, w.delta, state.working[l], mixer_norm, x);
      }
      if (!w.is_moe) {
        mlp_block(b, w.mlp, mlp_norm, x);
      } else {
        const MoeConfig moe{L, p_.n_experts, {k_, p_.norm_topk_prob}, true};
        moe_block(b, *context_.store, moe, w.moe, mlp_norm, x, moe_routing.layer(moe_index++));
      }
    }

    moe_routing.download(lm_head_block(b, x, {final_norm_, norm}, lm_head_, options.logits), logits, routing);
    std::swap(state.committed, state.working);  // the call succeeded: its states are the session's
    state.n_past += T;
  }

 private:
  AttentionConfig attention_config() const {
    AttentionConfig a;
    a.n_heads = p_.n_heads;
    a.n_kv_heads = p_.n_kv_heads;
    a.head_dim = p_.head_dim;
    a.norm_eps = p_.eps;
    a.qk_norm = true;
    a.zero_centered_qk_norm = true;
    a.output_gate = true;
    a.rope = rope_;
    return a;
  }

  ModelContext context_;
  HParams p_;
  int k_ = 0;
  ModelInfo info_;
  backend::RopeOptions rope_ = default_rope(p_.rope_theta, p_.rotary_dim);
  Tensor embed_, final_norm_, lm_head_;
  std::vector<LayerWeights> layers_;
};

}  // namespace

format::ModelLayout layout(const nlohmann::json& config) { return make_layout(read_hparams(config)); }

std::unique_ptr<Model> create(const ModelContext& context) {
  HParams p = read_hparams(context.packed->config());
  context.packed->check(make_layout(p));
  return std::make_unique<Qwen3Next>(context, std::move(p));
}

}  // namespace moeflux::arch::qwen3_next
