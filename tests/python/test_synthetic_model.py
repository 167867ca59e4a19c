"""benchmarks/synthetic_model.py writes packed models the engine opens and runs: the Qwen3.5 hybrid
structure (3:1 Gated DeltaNet / gated attention mix, shared experts) at toy sizes, at the bit widths
the benchmarks use."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import moeflux

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import synthetic_model  # noqa: E402


@pytest.mark.parametrize("expert_bits", [4, 2])
def test_hybrid_slice_opens_and_runs(expert_bits, tmp_path):
    path = synthetic_model.write(tmp_path / "toy", "qwen3.5-toy", 8, expert_bits, 8, 64, seed=0)
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "qwen3_5_moe_text" and config["full_attention_interval"] == 4
    model = moeflux.Model(path)
    assert model.info["moe_layers"] == list(range(8))
    ids = np.arange(1, 40, dtype=np.int32)
    logits = model.forward(ids)
    assert logits.shape == (len(ids), config["vocab_size"]) and np.isfinite(logits).all()
    # Token-dependent routing, as the 30B shape's: the prompt does not all go to the same experts.
    assert len(np.unique(model.routing.experts[:, 0, 0])) > 1


def test_the_real_shape_has_the_issue_dimensions():
    cfg = synthetic_model.SHAPES["qwen3.5-397b-a17b"]
    layers = [name for name, *_ in synthetic_model.dense_tensors(cfg, 60) if name.endswith("input_layernorm.weight")]
    linear = [n for n, *_ in synthetic_model.dense_tensors(cfg, 60) if n.endswith("linear_attn.A_log")]
    assert len(layers) == 60 and len(linear) == 45  # the real 3:1 mix
    assert (cfg["hidden_size"], cfg["num_experts"], cfg["num_experts_per_tok"]) == (4096, 512, 10)
    assert (cfg["moe_intermediate_size"], cfg["shared_expert_intermediate_size"]) == (1024, 1024)
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]) == (32, 2, 256)
    assert (cfg["linear_num_value_heads"], cfg["linear_num_key_heads"], cfg["linear_key_head_dim"]) == (64, 16, 128)
