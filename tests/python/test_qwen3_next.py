"""What only the Qwen3-Next / Qwen3.5 hybrid has (its comparison with transformers is in
test_against_transformers.py): the same output across expert budgets on every backend, saved
states, the multimodal checkpoint, and checkpoints with bad shapes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

import compare
import moeflux


def session_run(model: moeflux.Model, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Prefill, token-by-token decode and greedy generation in one session."""
    logits = [model.forward(ids[:20])]
    for t in ids[20:28]:
        logits.append(model.forward([int(t)]))
    tokens = list(model.generate_tokens([3], max_new_tokens=8, stop_tokens=[]))
    return np.concatenate(logits), model.routing.experts, tokens


@pytest.mark.parametrize("name", ["qwen3_next_base", "qwen3_5_moe_vl"])
@pytest.mark.parametrize("backend", compare.BACKENDS)
def test_output_is_bit_identical_whatever_the_budget(backend, name, packed):
    compare.check_budgets(backend, packed(name), compare.HYBRID.prompt(160), session_run)


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
    ids = compare.HYBRID.prompt(160, 30)
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
