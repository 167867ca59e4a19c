"""The converter: every source form Hugging Face checkpoints come in gives the same model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

import moeflux
import tiny_models

NAME = "qwen3_moe_base"


def rewrite(src: Path, dst: Path, transform) -> Path:
    """Copies the checkpoint in `src` to `dst`, passing its tensors through `transform`."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.suffix != ".safetensors":
            (dst / f.name).write_bytes(f.read_bytes())
    tensors = {}
    for f in sorted(src.glob("*.safetensors")):
        tensors.update(load_file(f))
    save_file(transform(tensors), dst / "model.safetensors")
    return dst


def fuse_experts(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-expert keys -> fused experts.gate_up_proj [E, 2I, H] and experts.down_proj [E, H, I]."""
    out, groups = {}, {}
    for name, t in tensors.items():
        if ".mlp.experts." in name:
            prefix, rest = name.split(".mlp.experts.")
            e, block, _ = rest.split(".")
            groups.setdefault(prefix, {}).setdefault(int(e), {})[block] = t
        else:
            out[name] = t
    for prefix, experts in groups.items():
        order = sorted(experts)
        out[f"{prefix}.mlp.experts.gate_up_proj"] = np.stack(
            [np.concatenate([experts[e]["gate_proj"], experts[e]["up_proj"]]) for e in order]
        )
        out[f"{prefix}.mlp.experts.down_proj"] = np.stack([experts[e]["down_proj"] for e in order])
    return out


def language_model_prefix(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The multimodal layout: "model.language_model." keys plus tensors moeflux must skip."""
    out = {n.replace("model.", "model.language_model.", 1) if n.startswith("model.") else n: t for n, t in tensors.items()}
    out["model.visual.patch_embed.weight"] = np.zeros((4, 4), np.float32)
    out["mtp.fc.weight"] = np.zeros((4, 4), np.float32)
    return out


@pytest.fixture(scope="module")
def baseline(packed):
    model = moeflux.Model(packed(NAME))
    ids = np.arange(3, 27, dtype=np.int32)
    return ids, model.forward(ids), model.routing.experts


@pytest.mark.parametrize("form", ["fused", "language_model_prefix", "fused_and_prefix"])
def test_source_forms_convert_to_identical_models(form, checkpoint, baseline, tmp_path):
    transform = {
        "fused": fuse_experts,
        "language_model_prefix": language_model_prefix,
        "fused_and_prefix": lambda t: language_model_prefix(fuse_experts(t)),
    }[form]
    src = rewrite(checkpoint(NAME), tmp_path / "src", transform)
    report = moeflux.convert(src, tmp_path / "packed", progress=False)
    if "prefix" in form:
        assert sorted(report["ignored"]) == ["model.visual.patch_embed.weight", "mtp.fc.weight"]
    ids, logits, experts = baseline
    model = moeflux.Model(tmp_path / "packed")
    np.testing.assert_array_equal(model.forward(ids), logits)  # same bytes in, same numbers out
    np.testing.assert_array_equal(model.routing.experts, experts)


def test_sharded_checkpoint_with_index(tmp_path, baseline):
    src = tmp_path / "sharded"
    ref = tiny_models.build_checkpoint(NAME, tmp_path / "single")
    hf = tiny_models.load_reference(ref)
    hf.save_pretrained(src, max_shard_size="100KB")
    assert (src / "model.safetensors.index.json").exists()
    assert len(list(src.glob("*.safetensors"))) > 1
    moeflux.convert(src, tmp_path / "packed", progress=False)
    ids, logits, _ = baseline
    np.testing.assert_array_equal(moeflux.Model(tmp_path / "packed").forward(ids), logits)


@pytest.mark.parametrize("dtype,tolerance", [("bf16", 3e-2), ("f16", 3e-3)])
def test_16_bit_storage_stays_close(dtype, tolerance, checkpoint, baseline, tmp_path):
    moeflux.convert(checkpoint(NAME), tmp_path / "packed", dtype=dtype, progress=False)
    manifest = json.loads((tmp_path / "packed" / "moeflux.json").read_text())
    assert {t["dtype"] for t in manifest["dense"]["tensors"]} == {dtype}
    ids, logits, _ = baseline
    low = moeflux.Model(tmp_path / "packed").forward(ids)
    assert np.max(np.abs(low - logits)) / np.max(np.abs(logits)) < tolerance


def test_bf16_source_checkpoint_matches_transformers_in_float32(tmp_path):
    """A bf16 checkpoint converts as bf16; computing in float32 matches transformers upcast to float32."""
    src = tiny_models.build_checkpoint(NAME, tmp_path / "f32")
    bf16 = rewrite(src, tmp_path / "bf16", lambda t: {n: torch.from_numpy(a).bfloat16().float().numpy() for n, a in t.items()})
    moeflux.convert(bf16, tmp_path / "packed", dtype="bf16", progress=False)
    ids = np.arange(24, dtype=np.int32)
    reference = tiny_models.load_reference(bf16)
    with torch.no_grad():
        expected = reference(torch.from_numpy(ids).long()[None]).logits[0].numpy()
    actual = moeflux.Model(tmp_path / "packed").forward(ids)
    assert np.max(np.abs(actual - expected)) / np.max(np.abs(expected)) < 1e-5


def test_conversion_copies_config_and_tokenizer_files(checkpoint, tmp_path):
    src = rewrite(checkpoint(NAME), tmp_path / "src", lambda t: t)
    (src / "tokenizer.json").write_text("{}")
    (src / "tokenizer_config.json").write_text("{}")
    (src / "unrelated.txt").write_text("x")
    moeflux.convert(src, tmp_path / "packed", progress=False)
    names = {p.name for p in (tmp_path / "packed").iterdir()}
    assert {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "moeflux.json", "dense.bin"} <= names
    assert "unrelated.txt" not in names


def test_progress_is_reported(checkpoint, tmp_path, capsys):
    moeflux.convert(checkpoint(NAME), tmp_path / "packed", progress=True)
    assert "convert" in capsys.readouterr().err


def test_existing_destination_is_kept_unless_overwrite(checkpoint, tmp_path):
    moeflux.convert(checkpoint(NAME), tmp_path / "packed", progress=False)
    before = (tmp_path / "packed" / "moeflux.json").read_bytes()
    with pytest.raises(moeflux.Error, match="overwrite"):
        moeflux.convert(checkpoint(NAME), tmp_path / "packed", progress=False)
    assert (tmp_path / "packed" / "moeflux.json").read_bytes() == before
    moeflux.convert(checkpoint(NAME), tmp_path / "packed", overwrite=True, progress=False)
