// Qwen3-MoE / Qwen2-MoE, mirroring transformers' Qwen3MoeForCausalLM and Qwen2MoeForCausalLM.
// Hidden states are [T, H] float32; weights keep their HF names (docs/FORMAT.md). Layer L is MoE iff
// L is not in mlp_only_layers and (L + 1) % decoder_sparse_step == 0.
#include "moeflux/arch/qwen3_moe.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "moeflux/arch/blocks/attention.h"
#include "moeflux/arch/blocks/lm_head.h"
#include "moeflux/arch/blocks/moe_block.h"
#include "moeflux/arch/config_reader.h"

namespace moeflux::arch::qwen3_moe {
namespace {

using backend::Tensor;

// ---- hyperparameters (config.json)
struct HParams {
  std::string model_type;
  int vocab = 0, hidden = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int intermediate = 0, moe_intermediate = 0, shared_intermediate = 0;
  int n_experts = 0, k = 0;
  bool norm_topk_prob = false, tied = false, qk_norm = true;
  float eps = 1e-6f;
  double rope_theta = 10000.0;
  std::int64_t max_position = 0;
  std::vector<bool> is_moe;                  // per layer
  std::vector<std::int64_t> sliding_window;  // per layer, 0 = none
};

HParams read_hparams(const nlohmann::json& json) {
  const ConfigReader c(json, "config.json");
  HParams p;
  p.model_type = c.get<std::string>("model_type");
  p.vocab = c.positive("vocab_size");
  p.hidden = c.positive("hidden_size");
  p.n_layers = c.positive("num_hidden_layers");
  p.n_heads = c.positive("num_attention_heads");
  p.n_kv_heads = c.has("num_key_value_heads") ? c.positive("num_key_value_heads") : p.n_heads;
  MF_CHECK(p.n_heads % p.n_kv_heads == 0, ConfigError, "[read_config] num_attention_heads (", p.n_heads,
           ") is not a multiple of num_key_value_heads (", p.n_kv_heads, ")");
  p.head_dim = c.has("head_dim") ? c.positive("head_dim") : p.hidden / p.n_heads;
  p.eps = static_cast<float>(c.get_or<double>("rms_norm_eps", 1e-6));
  p.rope_theta = c.rope_theta(10000.0);
  p.max_position = c.get_or<std::int64_t>("max_position_embeddings", 32768);
  p.tied = c.get_or<bool>("tie_word_embeddings", false);
  p.norm_topk_prob = c.get_or<bool>("norm_topk_prob", false);
  p.n_experts = c.positive(c.key_of({"num_experts", "num_local_experts"}));
  p.k = c.positive("num_experts_per_tok");
  MF_CHECK(p.k <= p.n_experts, ConfigError, "[read_config] num_experts_per_tok (", p.k,
           ") exceeds num_experts (", p.n_experts, ")");
  p.moe_intermediate = c.positive("moe_intermediate_size");

  const bool qwen2 = p.model_type == "qwen2_moe";
  p.qk_norm = !qwen2;
  if (qwen2) p.shared_intermediate = c.get_or<int>("shared_expert_intermediate_size", 0);
  MF_CHECK(!c.get_or<bool>(qwen2 ? "qkv_bias" : "attention_bias", qwen2), Unsupported,
           "[read_config] attention projections with bias are not supported yet (config.json sets ",
           qwen2 ? "qkv_bias" : "attention_bias", ")");
  const auto rope_scaling = c.json().find("rope_scaling");
  if (rope_scaling != c.json().end() && rope_scaling->is_object()) {
    const std::string type = rope_scaling->value("rope_type", rope_scaling->value("type", "default"));
    MF_CHECK(type == "default", Unsupported, "[read_config] rope type \"", type, "\" is not supported for ",
             p.model_type);
  }

  const int step = c.get_or<int>("decoder_sparse_step", 1);
  const auto mlp_only = c.get_or<std::vector<int>>("mlp_only_layers", {});
  const bool sliding = c.get_or<bool>("use_sliding_window", false);
  const std::int64_t window = sliding ? c.get_or<std::int64_t>("sliding_window", 0) : 0;
  const auto layer_types = c.get_or<std::vector<std::string>>("layer_types", {});
  const int max_window_layers = c.get_or<int>("max_window_layers", p.n_layers);
  for (int L = 0; L < p.n_layers; ++L) {
    const bool dense = std::find(mlp_only.begin(), mlp_only.end(), L) != mlp_only.end();
    p.is_moe.push_back(!dense && step > 0 && (L + 1) % step == 0);
    bool windowed = window > 0;
    if (qwen2 && window > 0)  // Qwen2-MoE: per-layer types, default odd-numbered layers below max_window_layers
      windowed = layer_types.empty() ? ((L + 1) % 2 == 1 && L < max_window_layers)
                                     : layer_types.at(static_cast<std::size_t>(L)) == "sliding_attention";
    p.sliding_window.push_back(windowed ? window : 0);
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
  format::ModelLayout layout;
  // Norms and routers stay float (their precision decides which experts run); projections,
  // embeddings and the LM head may be quantized (ConvertOptions::dense_bits).
  auto dense = [&](std::string name, S shape) { layout.dense.push_back({std::move(name), std::move(shape), true, false}); };
  auto matrix = [&](std::string name, S shape) { layout.dense.push_back({std::move(name), std::move(shape), true, true}); };
  matrix("model.embed_tokens.weight", {p.vocab, H});
  for (int L = 0; L < p.n_layers; ++L) {
    dense(layer_name(L, "input_layernorm.weight"), {H});
    dense(layer_name(L, "post_attention_layernorm.weight"), {H});
    matrix(layer_name(L, "self_attn.q_proj.weight"), {p.n_heads * D, H});
    matrix(layer_name(L, "self_attn.k_proj.weight"), {p.n_kv_heads * D, H});
    matrix(layer_name(L, "self_attn.v_proj.weight"), {p.n_kv_heads * D, H});
    matrix(layer_name(L, "self_attn.o_proj.weight"), {H, p.n_heads * D});
    if (p.qk_norm) {
      dense(layer_name(L, "self_attn.q_norm.weight"), {D});
      dense(layer_name(L, "self_attn.k_norm.weight"), {D});
    }
    if (!p.is_moe[L]) {
      matrix(layer_name(L, "mlp.gate_proj.weight"), {p.intermediate, H});
      matrix(layer_name(L, "mlp.up_proj.weight"), {p.intermediate, H});
      matrix(layer_name(L, "mlp.down_proj.weight"), {H, p.intermediate});
      continue;
    }
    dense(layer_name(L, "mlp.gate.weight"), {p.n_experts, H});
    if (p.shared_intermediate > 0) {
      matrix(layer_name(L, "mlp.shared_expert.gate_proj.weight"), {p.shared_intermediate, H});
      matrix(layer_name(L, "mlp.shared_expert.up_proj.weight"), {p.shared_intermediate, H});
      matrix(layer_name(L, "mlp.shared_expert.down_proj.weight"), {H, p.shared_intermediate});
      dense(layer_name(L, "mlp.shared_expert_gate.weight"), {1, H});
    }
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
  AttentionWeights attn;
  bool is_moe = false;
  MlpWeights mlp;
  MoeWeights moe;
};

class Qwen3MoeState : public State {
 public:
  explicit Qwen3MoeState(int n_layers) : caches(static_cast<std::size_t>(n_layers)) {}
  void reset() override { n_past = 0; }  // cache rows past n_past are never read
  // Each layer's keys and values of positions [0, n_past), [n_past, nkv * D].
  std::vector<StateTensor> tensors() override {
    std::vector<StateTensor> out;
    if (n_past == 0) return out;
    for (std::size_t L = 0; L < caches.size(); ++L) {
      out.push_back({"layers." + std::to_string(L) + ".k", caches[L].k.rows(0, n_past)});
      out.push_back({"layers." + std::to_string(L) + ".v", caches[L].v.rows(0, n_past)});
    }
    return out;
  }
  std::vector<KvCache> caches;
};

// ---- forward pass
class Qwen3Moe : public Model {
 public:
  Qwen3Moe(const ModelContext& context, HParams p) : context_(context), p_(std::move(p)) {
    backend::Backend& b = *context_.backend;
    auto load = [&](const std::string& name) { return b.resident(context_.packed->dense(name)); };
    embed_ = load("model.embed_tokens.weight");
    final_norm_ = load("model.norm.weight");
    lm_head_ = p_.tied ? embed_ : load("lm_head.weight");
    for (int L = 0; L < p_.n_layers; ++L) {
      LayerWeights w;
      auto layer = [&](const std::string& rest) { return load(layer_name(L, rest)); };
      w.input_norm = layer("input_layernorm.weight");
      w.post_norm = layer("post_attention_layernorm.weight");
      w.attn = {layer("self_attn.q_proj.weight"), layer("self_attn.k_proj.weight"),
                layer("self_attn.v_proj.weight"), layer("self_attn.o_proj.weight"), {}, {}};
      if (p_.qk_norm) {
        w.attn.q_norm = layer("self_attn.q_norm.weight");
        w.attn.k_norm = layer("self_attn.k_norm.weight");
      }
      w.is_moe = p_.is_moe[L];
      if (!w.is_moe) {
        w.mlp = {layer("mlp.gate_proj.weight"), layer("mlp.up_proj.weight"), layer("mlp.down_proj.weight")};
      } else {
        w.moe.router = layer("mlp.gate.weight");
        if (p_.shared_intermediate > 0) {
          w.moe.shared_expert = {layer("mlp.shared_expert.gate_proj.weight"),
                                 layer("mlp.shared_expert.up_proj.weight"),
                                 layer("mlp.shared_expert.down_proj.weight")};
          w.moe.shared_expert_gate = layer("mlp.shared_expert_gate.weight");
        }
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
  std::unique_ptr<State> new_state() const override { return std::make_unique<Qwen3MoeState>(p_.n_layers); }

  void reserve_state(State& state_base, std::int64_t n_past) override {
    auto& state = static_cast<Qwen3MoeState&>(state_base);
    for (int L = 0; L < p_.n_layers; ++L)
      reserve_kv_cache(*context_.backend, attention_config(L), state.caches[static_cast<std::size_t>(L)], n_past, 0);
  }

  void forward(State& state_base, std::span<const std::int32_t> tokens, const ForwardOptions& options,
               std::vector<float>& logits, RoutingRecord* routing) override {
    auto& state = static_cast<Qwen3MoeState&>(state_base);
    backend::Backend& b = *context_.backend;
    const auto T = static_cast<std::int64_t>(tokens.size());
    const std::int64_t H = p_.hidden;
    const auto n_moe = static_cast<std::int64_t>(info_.moe_layers.size());
    std::vector<std::int32_t> positions(tokens.size());
    std::iota(positions.begin(), positions.end(), static_cast<std::int32_t>(state.n_past));
    Tensor x = b.empty({T, H});  // the residual stream
    b.embedding(embed_, tokens, x);
    const backend::NormOptions norm{p_.eps, false};
    ForwardRouting moe_routing(b, T, n_moe, k_, p_.n_experts, routing != nullptr && options.record_router_logits);
    std::int64_t moe_index = 0;
    // Where the backend can, a MoE layer also writes x times the next layer's input norm weight, and
    // that layer projects it (backend.h's FoldedNorm): a decode step without the norm's own step.
    // The choice depends on T only, so the bits do not depend on which experts the device holds.
    backend::FoldedNorm fold{Tensor(), norm, Tensor()};
    bool folded = false;  // fold.scaled holds this layer's normed input
    for (int L = 0; L < p_.n_layers; ++L) {
      const LayerWeights& w = layers_[static_cast<std::size_t>(L)];
      const PreNorm mixer_norm{w.input_norm, norm}, mlp_norm{w.post_norm, norm};
      attention_block(b, attention_config(L), w.attn, state.caches[static_cast<std::size_t>(L)], mixer_norm,
                      positions, state.n_past, x, folded ? &fold.scaled : nullptr);
      folded = false;
      if (!w.is_moe) {
        mlp_block(b, w.mlp, mlp_norm, x);
      } else {
        const MoeConfig moe{L, p_.n_experts, {k_, p_.norm_topk_prob}, p_.shared_intermediate > 0};
        folded = L + 1 < p_.n_layers && !moe.has_shared_expert && b.folds_input_norm(T);
        if (folded) {
          fold.weight = layers_[static_cast<std::size_t>(L + 1)].input_norm;
          if (!fold.scaled.defined()) fold.scaled = b.empty({T, H});
        }
        moe_block(b, *context_.store, moe, w.moe, mlp_norm, x, moe_routing.layer(moe_index++), folded ? &fold : nullptr);
      }
    }

    moe_routing.download(lm_head_block(b, x, {final_norm_, norm}, lm_head_, options.logits), logits, routing);
    state.n_past += T;
  }

 private:
  AttentionConfig attention_config(int L) const {
    AttentionConfig a;
    a.n_heads = p_.n_heads;
    a.n_kv_heads = p_.n_kv_heads;
    a.head_dim = p_.head_dim;
    a.norm_eps = p_.eps;
    a.qk_norm = p_.qk_norm;
    a.rope = rope_;
    a.sliding_window = p_.sliding_window[static_cast<std::size_t>(L)];
    return a;
  }

  ModelContext context_;
  HParams p_;
  int k_ = 0;
  ModelInfo info_;
  backend::RopeOptions rope_ = default_rope(p_.rope_theta, p_.head_dim);
  Tensor embed_, final_norm_, lm_head_;
  std::vector<LayerWeights> layers_;
};

}  // namespace

format::ModelLayout layout(const nlohmann::json& config) { return make_layout(read_hparams(config)); }

std::unique_ptr<Model> create(const ModelContext& context) {
  HParams p = read_hparams(context.packed->config());
  context.packed->check(make_layout(p));
  return std::make_unique<Qwen3Moe>(context, std::move(p));
}

}  // namespace moeflux::arch::qwen3_moe
