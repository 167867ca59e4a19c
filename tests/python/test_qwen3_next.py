"""The Qwen3-Next / Qwen3.5 hybrid on the CPU backend against transformers: logits and routing over a
prompt long enough for two chunks of the chunked delta rule, prefill versus decode, prefill in
chunks, greedy generation, output across expert budgets, saved states, and checkpoints with bad
shapes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import moeflux
import tiny_models

NAMES = list(tiny_models.HYBRID_CONFIGS)
PROMPT_LEN = 70  # more than one 64-token chunk, for transformers' and ours


def prompt(vocab: int, n: int = PROMPT_LEN, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, size=n).astype(np.int32)


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


@pytest.fixture(scope="module")
def reference_runs(checkpoint):
    """transformers' logits, routing (per MoE layer: indices and weights [T, k]) and router logits."""
    runs = {}

    def get(name: str):
        if name not in runs:
            model = tiny_models.load_reference(checkpoint(name))
            ids = prompt(model.config.vocab_size)
            handles, captured = tiny_models.router_hooks(model)
            with torch.no_grad():
                out = model(torch.from_numpy(ids).long().unsqueeze(0), output_router_logits=True)
            for h in handles:
                h.remove()
            layers = sorted(captured)
            experts = np.stack([captured[L][0][0].numpy() for L in layers], axis=1)
            weights = np.stack([captured[L][0][1].numpy() for L in layers], axis=1)
            router_logits = np.stack([r.numpy() for r in out.router_logits], axis=1)
            runs[name] = (ids, out.logits[0].numpy(), experts, weights, router_logits, layers, model)
        return runs[name]

    return get


@pytest.mark.parametrize("name", NAMES)
def test_logits_and_routing_match_transformers(name, packed, reference_runs):
    ids, logits_ref, experts_ref, weights_ref, router_ref, layers, _ = reference_runs(name)
    model = moeflux.Model(packed(name), record_router_logits=True)
    logits = model.forward(ids)
    assert logits.shape == logits_ref.shape and logits.dtype == np.float32
    assert relative_error(logits, logits_ref) < 1e-5

    routing = model.routing
    assert routing.moe_layers == tuple(layers)
    assert routing.experts.shape == experts_ref.shape == (len(ids), len(layers), model.info["experts_per_token"])
    np.testing.assert_array_equal(routing.experts, experts_ref)
    np.testing.assert_allclose(routing.weights, weights_ref, rtol=1e-5, atol=1e-6)
    assert relative_error(routing.router_logits, router_ref) < 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_prefill_equals_token_by_token_decode(name, packed, reference_runs):
    ids, logits_ref, *_ = reference_runs(name)
    model = moeflux.Model(packed(name))
    prefill = model.forward(ids)
    prefill_experts = model.routing.experts
    model.reset()  # clears the conv and recurrent states with the KV caches
    assert model.n_past == 0
    decoded = np.concatenate([model.forward(ids[i : i + 1]) for i in range(len(ids))])
    assert relative_error(decoded, prefill) < 1e-5
    assert relative_error(decoded, logits_ref) < 1e-5
    np.testing.assert_array_equal(model.routing.experts, prefill_experts)
    # A prefill in uneven chunks continues the same sequence (states carried between calls).
    model.reset()
    chunked = np.concatenate([model.forward(ids[:5]), model.forward(ids[5:17]), model.forward(ids[17:])])
    assert relative_error(chunked, logits_ref) < 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_greedy_generation_matches_transformers(name, packed, reference_runs):
    ids, *_, reference = reference_runs(name)
    expected = tiny_models.greedy_tokens(reference, ids, 32)
    model = moeflux.Model(packed(name))
    assert list(model.generate_tokens(ids, max_new_tokens=32, stop_tokens=[])) == expected
    # The same continuation after a prefill in several chunks.
    model.reset()
    model.forward(ids[:9])
    model.forward(ids[9:40])
    model.forward(ids[40:-1])
    assert list(model.generate_tokens(ids[-1:], max_new_tokens=32, stop_tokens=[])) == expected


def record_stride(model_dir: Path) -> int:
    manifest = json.loads((model_dir / "moeflux.json").read_text())
    return max(layer["stride"] for layer in manifest["experts"]["layers"])


def session_run(model: moeflux.Model, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Prefill, token-by-token decode and greedy generation in one session."""
    logits = [model.forward(ids[:20])]
    for t in ids[20:28]:
        logits.append(model.forward([int(t)]))
    tokens = list(model.generate_tokens([3], max_new_tokens=8, stop_tokens=[]))
    return np.concatenate(logits), model.routing.experts, tokens


@pytest.mark.parametrize("name", ["qwen3_next_base", "qwen3_5_moe_vl"])
def test_output_is_bit_identical_whatever_the_budget(name, packed):
    path = packed(name)
    ids = prompt(160)
    reference = session_run(moeflux.Model(path), ids)
    stride = record_stride(path)
    info = moeflux.Model(path).info
    n_records = len(info["moe_layers"]) * info["n_experts"]
    for budget in (info["experts_per_token"] * stride, n_records * stride // 2):
        model = moeflux.Model(path, cache_bytes=budget)
        logits, experts, tokens = session_run(model, ids)
        np.testing.assert_array_equal(logits, reference[0])
        np.testing.assert_array_equal(experts, reference[1])
        assert tokens == reference[2]


def test_multimodal_checkpoint_skips_the_vision_tower(checkpoint, tmp_path):
    report = moeflux.convert(checkpoint("qwen3_5_moe_vl"), tmp_path / "packed", progress=False)
    assert report["ignored"] and all(name.startswith("model.visual.") for name in report["ignored"])
    assert moeflux.Model(tmp_path / "packed").info["model_type"] == "qwen3_5_moe"


def copy_with(src: Path, dst: Path, tensors=None, config=None) -> Path:
    """A copy of checkpoint `src` with some tensors replaced and config.json keys changed."""
    shutil.copytree(src, dst)
    if tensors:
        weights = load_file(dst / "model.safetensors")
        weights.update(tensors)
        save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})
    if config:
        data = json.loads((dst / "config.json").read_text())
        data.update(config)
        (dst / "config.json").write_text(json.dumps(data))
    return dst


def test_wrong_conv_width_is_refused_naming_the_tensor(checkpoint, tmp_path):
    src = checkpoint("qwen3_next_base")
    name = "model.layers.0.linear_attn.conv1d.weight"
    conv = load_file(src / "model.safetensors")[name]
    bad = copy_with(src, tmp_path / "bad", tensors={name: conv[:, :, :3].contiguous()})
    with pytest.raises(moeflux.FormatError, match=r"conv1d\.weight.*\[160, 1, 3\].*\[160, 1, 4\]"):
        moeflux.convert(bad, tmp_path / "packed", progress=False)


def test_projection_of_the_wrong_head_count_is_refused(checkpoint, tmp_path):
    src = checkpoint("qwen3_5_moe_text")
    name = "model.layers.0.linear_attn.in_proj_qkv.weight"
    qkv = load_file(src / "model.safetensors")[name]
    bad = copy_with(src, tmp_path / "bad", tensors={name: qkv[:-24].contiguous()})  # one value head short
    with pytest.raises(moeflux.FormatError, match=r"in_proj_qkv\.weight"):
        moeflux.convert(bad, tmp_path / "packed", progress=False)


def test_value_heads_not_a_multiple_of_key_heads_is_refused(checkpoint, tmp_path):
    bad = copy_with(checkpoint("qwen3_next_base"), tmp_path / "bad", config={"linear_num_value_heads": 5})
    with pytest.raises(moeflux.ConfigError, match="linear_num_value_heads.*linear_num_key_heads"):
        moeflux.convert(bad, tmp_path / "packed", progress=False)


def test_saved_state_continues_bit_for_bit(packed, tmp_path):
    path = packed("qwen3_next_base")
    ids = prompt(160, 30)
    whole = moeflux.Model(path)
    whole.forward(ids)
    want = whole.forward([4, 6, 9])
    first = moeflux.Model(path)
    first.forward(ids)  # the same calls: chunk boundaries change the last bits of the delta rule
    first.save_state(tmp_path / "prompt.mfstate")
    resumed = moeflux.Model(path)
    resumed.load_state(tmp_path / "prompt.mfstate")
    assert resumed.n_past == len(ids)
    np.testing.assert_array_equal(resumed.forward([4, 6, 9]), want)
    # The recurrent states hold every position: forgetting some is refused, not approximated.
    with pytest.raises(moeflux.Unsupported, match="reset"):
        resumed.truncate(5)


def test_info_counts_the_attention_layers_of_a_multimodal_checkpoint(packed):
    from test_cli import moeflux_cli

    done = moeflux_cli("info", str(packed("qwen3_5_moe_vl")))
    assert done.returncode == 0, done.stderr
    assert "qwen3_5_moe" in done.stdout and "(1 attention layers)" in done.stdout, done.stdout
