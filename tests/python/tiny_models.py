"""Tiny random-weight Hugging Face checkpoints that the tests build themselves (float32), covering
every path of an architecture: dense and MoE layers, k = 1 and k > 1, norm_topk_prob both ways,
GQA, odd sizes, tied and untied embeddings, a shared expert, and the Qwen3-Next / Qwen3.5 hybrid
(Gated DeltaNet and gated attention layers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import transformers

# Each entry: (model_type, config overrides). Sizes follow the notes in docs/ARCHITECTURE.md:
# head_dim != hidden / heads, randomised norms, a large initializer_range so routing is decisive.
QWEN3_MOE_BASE: dict[str, Any] = dict(
    vocab_size=160,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=32,
    mlp_only_layers=[0],
    decoder_sparse_step=1,
    num_experts=8,
    num_experts_per_tok=2,
    moe_intermediate_size=32,
    norm_topk_prob=True,
    rope_theta=1e6,
    rms_norm_eps=1e-6,
    max_position_embeddings=256,
    tie_word_embeddings=False,
    initializer_range=0.1,
)

CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "qwen3_moe_base": ("qwen3_moe", {}),
    "qwen3_moe_k1_unnormalized": ("qwen3_moe", dict(num_experts_per_tok=1, norm_topk_prob=False)),
    "qwen3_moe_k3_unnormalized": ("qwen3_moe", dict(num_experts_per_tok=3, norm_topk_prob=False, mlp_only_layers=[])),
    "qwen3_moe_odd_tied": (
        "qwen3_moe",
        dict(
            vocab_size=151,
            hidden_size=60,
            intermediate_size=83,
            num_attention_heads=3,
            num_key_value_heads=1,
            head_dim=20,
            num_hidden_layers=5,
            mlp_only_layers=[],
            decoder_sparse_step=2,
            num_experts=7,
            num_experts_per_tok=3,
            moe_intermediate_size=37,
            tie_word_embeddings=True,
        ),
    ),
    "qwen3_moe_mha": ("qwen3_moe", dict(num_key_value_heads=4, mlp_only_layers=[1, 3], num_hidden_layers=4)),
    "qwen2_moe_shared": (
        "qwen2_moe",
        dict(shared_expert_intermediate_size=48, qkv_bias=False, num_hidden_layers=3, head_dim=16, mlp_only_layers=[2]),
    ),
}


# The Qwen3-Next / Qwen3.5 hybrid: both layer kinds, value heads a multiple (> 1) of key heads,
# dk != dv (a transposed state shows), partial rotary (head_dim 32 -> 8 rotary channels).
HYBRID_BASE: dict[str, Any] = dict(
    vocab_size=160,
    hidden_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=32,
    linear_num_key_heads=2,
    linear_num_value_heads=4,
    linear_key_head_dim=16,
    linear_value_head_dim=24,
    linear_conv_kernel_dim=4,
    num_experts=8,
    num_experts_per_tok=2,
    moe_intermediate_size=32,
    shared_expert_intermediate_size=48,
    rms_norm_eps=1e-6,
    max_position_embeddings=256,
    tie_word_embeddings=False,
    # Smaller than Qwen3-MoE's 0.1: the float32 recurrence of wider random projections loses digits
    # (transformers' own decode and prefill then differ by up to 3e-5); routers are scaled back up.
    initializer_range=0.05,
)
QWEN3_5_ROPE = dict(rope_type="default", rope_theta=1e6, partial_rotary_factor=0.25, mrope_section=[2, 1, 1],
                    mrope_interleaved=True)
QWEN3_5_VISION = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=4,
                      num_position_embeddings=16)

HYBRID_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    # full_attention_interval's default (layer 3 full), a dense MLP layer, top-2 renormalised.
    "qwen3_next_base": ("qwen3_next", dict(mlp_only_layers=[1], intermediate_size=96, norm_topk_prob=True,
                                           rope_theta=1e6)),
    # Explicit layer_types, three value heads per key head, top-3 not renormalised, conv width 3.
    "qwen3_next_unnormalized": (
        "qwen3_next",
        dict(
            num_hidden_layers=5,
            layer_types=["linear_attention", "full_attention", "linear_attention", "linear_attention", "full_attention"],
            linear_num_key_heads=1,
            linear_num_value_heads=3,
            linear_key_head_dim=12,
            linear_value_head_dim=20,
            linear_conv_kernel_dim=3,
            num_experts_per_tok=3,
            norm_topk_prob=False,
            rope_theta=1e4,
        ),
    ),
    "qwen3_5_moe_text": (
        "qwen3_5_moe_text",
        dict(layer_types=["linear_attention", "full_attention", "linear_attention", "linear_attention"],
             rope_parameters=QWEN3_5_ROPE),
    ),
    # The multimodal checkpoint (model.language_model.* and model.visual.* tensors).
    "qwen3_5_moe_vl": (
        "qwen3_5_moe",
        dict(layer_types=["linear_attention", "linear_attention", "full_attention", "linear_attention"],
             rope_parameters=QWEN3_5_ROPE, num_experts_per_tok=3),
    ),
}


def make_config(name: str) -> transformers.PretrainedConfig:
    if name in HYBRID_CONFIGS:
        model_type, overrides = HYBRID_CONFIGS[name]
        kwargs = dict(HYBRID_BASE)
        kwargs.update(overrides)
        if model_type == "qwen3_5_moe":
            return transformers.AutoConfig.for_model(model_type, text_config=kwargs, vision_config=QWEN3_5_VISION)
        return transformers.AutoConfig.for_model(model_type, **kwargs)
    model_type, overrides = CONFIGS[name]
    kwargs = dict(QWEN3_MOE_BASE)
    kwargs.update(overrides)
    if model_type == "qwen2_moe":
        kwargs.pop("head_dim", None)  # Qwen2-MoE derives head_dim = hidden / heads
    config = transformers.AutoConfig.for_model(model_type, **kwargs)
    return config


def randomize_norms(model: transformers.PreTrainedModel, zero_centered: bool) -> None:
    """HF initialises norms to 1 (or 0 where applied as 1 + w); randomise so the test sees them. The
    hybrid's gated output norm (linear_attn.norm) keeps a plain weight."""
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if "norm" not in param_name:
                continue
            plain = not zero_centered or "linear_attn.norm" in param_name
            param.copy_((1.0 if plain else 0.0) + 0.1 * torch.randn_like(param))


def build_checkpoint(name: str, directory: Path, seed: int = 0) -> Path:
    """Writes the tiny model `name` with save_pretrained into `directory` and returns it."""
    config = make_config(name)
    torch.manual_seed(seed)
    if config.model_type == "qwen3_5_moe":  # the multimodal model, as published checkpoints are
        model = transformers.AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    else:
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    randomize_norms(model, zero_centered=name in HYBRID_CONFIGS)
    if name in HYBRID_CONFIGS:
        with torch.no_grad():
            for param_name, param in model.named_parameters():
                if param_name.endswith("dt_bias"):  # HF: ones; spread it so the gates differ per head
                    param.copy_(1.0 + 0.5 * torch.randn_like(param))
                if param_name.endswith("mlp.gate.weight"):  # decisive routing (std 0.1)
                    param.mul_(2.0)
    model.save_pretrained(directory)
    return directory


def decoder_layers(model: transformers.PreTrainedModel) -> Any:
    """The decoder layers of a causal LM (or of a multimodal model's language model)."""
    inner = model.model
    return inner.layers if hasattr(inner, "layers") else inner.language_model.layers


def load_reference(directory: Path) -> transformers.PreTrainedModel:
    """The transformers model for exact comparison: float32, eager attention and experts."""
    model = transformers.AutoModelForCausalLM.from_pretrained(
        directory, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager"
    )
    return model.eval()


def router_hooks(model: transformers.PreTrainedModel) -> tuple[list[Any], dict[int, list[torch.Tensor]]]:
    """Forward hooks on each MoE layer's router; returns (handles, {layer: [indices [T, k] per call]})."""
    captured: dict[int, list[torch.Tensor]] = {}
    handles = []
    for index, layer in enumerate(decoder_layers(model)):
        gate = getattr(layer.mlp, "gate", None)
        if gate is None or not hasattr(layer.mlp, "experts"):
            continue
        captured[index] = []

        def hook(_module: Any, _inputs: Any, output: Any, index: int = index) -> None:
            captured[index].append((output[2].detach().clone(), output[1].detach().clone()))

        handles.append(gate.register_forward_hook(hook))
    return handles, captured


def greedy_tokens(model: transformers.PreTrainedModel, ids: Any, n: int) -> list[int]:
    """transformers' greedy generate of exactly n tokens after `ids` (no eos stop)."""
    input_ids = torch.as_tensor(ids).long().unsqueeze(0)
    with torch.no_grad():
        out = model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),  # else a prompt token equal to pad_token_id is masked
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )
    return out[0, len(ids) :].tolist()
