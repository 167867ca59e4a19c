"""Tiny random-weight Hugging Face checkpoints that the tests build themselves (float32), covering
every path of an architecture: dense and MoE layers, k = 1 and k > 1, norm_topk_prob both ways,
GQA, odd sizes, tied and untied embeddings, a shared expert."""

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


def make_config(name: str) -> transformers.PretrainedConfig:
    model_type, overrides = CONFIGS[name]
    kwargs = dict(QWEN3_MOE_BASE)
    kwargs.update(overrides)
    if model_type == "qwen2_moe":
        kwargs.pop("head_dim", None)  # Qwen2-MoE derives head_dim = hidden / heads
    config = transformers.AutoConfig.for_model(model_type, **kwargs)
    return config


def build_checkpoint(name: str, directory: Path, seed: int = 0) -> Path:
    """Writes the tiny model `name` with save_pretrained into `directory` and returns it."""
    config = make_config(name)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if "norm" in param_name:  # HF initialises norms to 1; randomise so the test sees them
                param.copy_(1.0 + 0.1 * torch.randn_like(param))
    model.save_pretrained(directory)
    return directory


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
    for index, layer in enumerate(model.model.layers):
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
    with torch.no_grad():
        out = model.generate(
            torch.as_tensor(ids).long().unsqueeze(0),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )
    return out[0, len(ids) :].tolist()
