"""Bad input gets a typed moeflux error naming the file and the problem; nothing crashes, and a
session that saw a bad call keeps working."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import moeflux

NAME = "qwen3_moe_base"


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_config(directory: Path, **changes) -> None:
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))


def edit_tensors(directory: Path, transform) -> None:
    path = directory / "model.safetensors"
    save_file(transform(load_file(path)), path)


# ---- the converter
def test_missing_config(checkpoint, tmp_path):
    src = copy(checkpoint(NAME), tmp_path / "src")
    (src / "config.json").unlink()
    with pytest.raises(moeflux.ConfigError, match="config.json"):
        moeflux.convert(src, tmp_path / "out", progress=False)


def test_malformed_config(checkpoint, tmp_path):
    src = copy(checkpoint(NAME), tmp_path / "src")
    (src / "config.json").write_text('{"model_type": "qwen3_moe", ')
    with pytest.raises(moeflux.ConfigError, match="config.json"):
        moeflux.convert(src, tmp_path / "out", progress=False)


def test_config_missing_a_required_key(checkpoint, tmp_path):
    src = copy(checkpoint(NAME), tmp_path / "src")
    config = json.loads((src / "config.json").read_text())
    del config["hidden_size"]
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(moeflux.ConfigError, match="hidden_size"):
        moeflux.convert(src, tmp_path / "out", progress=False)


def test_unsupported_model_type(checkpoint, tmp_path):
    src = copy(checkpoint(NAME), tmp_path / "src")
    edit_config(src, model_type="llama")
    with pytest.raises(moeflux.Unsupported, match="llama") as error:
        moeflux.convert(src, tmp_path / "out", progress=False)
    assert isinstance(error.value, NotImplementedError)


def test_missing_tensor(checkpoint, tmp_path):
    src = copy(checkpoint(NAME), tmp_path / "src")
    edit_tensors(src, lambda t: {n: a for n, a in t.items() if n != "model.layers.2.self_attn.k_proj.weight"})
    with pytest.raises(moeflux.FormatError, match=r"model\.layers\.2\.self_attn\.k_proj\.weight"):
        moeflux.convert(src, tmp_path / "out", progress=False)


def test_missing_expert(checkpoint, tmp_path):
    src = copy(checkpoint(NAME), tmp_path / "src")
    edit_tensors(src, lambda t: {n: a for n, a in t.items() if n != "model.layers.1.mlp.experts.5.up_proj.weight"})
    with pytest.raises(moeflux.FormatError, match=r"experts\.5\.up_proj"):
        moeflux.convert(src, tmp_path / "out", progress=False)


def test_tensor_of_the_wrong_shape(checkpoint, tmp_path):
    src = copy(checkpoint(NAME), tmp_path / "src")
    name = "model.layers.1.self_attn.o_proj.weight"
    edit_tensors(src, lambda t: {**t, name: t[name][:, :-1].copy()})
    with pytest.raises(moeflux.FormatError, match=r"o_proj\.weight.*\[64, 127\]|\[64, 127\].*o_proj"):
        moeflux.convert(src, tmp_path / "out", progress=False)


def test_tensor_of_an_unsupported_dtype(checkpoint, tmp_path):
    src = copy(checkpoint(NAME), tmp_path / "src")
    name = "model.norm.weight"
    edit_tensors(src, lambda t: {**t, name: t[name].astype(np.int64)})
    with pytest.raises(moeflux.Error, match=r"model\.norm\.weight"):
        moeflux.convert(src, tmp_path / "out", progress=False)


def test_truncated_safetensors(checkpoint, tmp_path):
    src = copy(checkpoint(NAME), tmp_path / "src")
    data = (src / "model.safetensors").read_bytes()
    (src / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(moeflux.FormatError, match="model.safetensors"):
        moeflux.convert(src, tmp_path / "out", progress=False)


def test_no_safetensors_at_all(checkpoint, tmp_path):
    src = copy(checkpoint(NAME), tmp_path / "src")
    (src / "model.safetensors").unlink()
    with pytest.raises(moeflux.FormatError, match="safetensors"):
        moeflux.convert(src, tmp_path / "out", progress=False)


# ---- opening a packed model
def test_not_a_packed_model(checkpoint):
    with pytest.raises(moeflux.FormatError, match="moeflux.json"):
        moeflux.Model(checkpoint(NAME))


def test_nonexistent_path(tmp_path):
    with pytest.raises(moeflux.Error, match="nowhere"):
        moeflux.Model(tmp_path / "nowhere")


def test_manifest_of_another_version(packed, tmp_path):
    model_dir = copy(packed(NAME), tmp_path / "m")
    manifest = json.loads((model_dir / "moeflux.json").read_text())
    manifest["version"] = 99
    (model_dir / "moeflux.json").write_text(json.dumps(manifest))
    with pytest.raises(moeflux.FormatError, match="version"):
        moeflux.Model(model_dir)


def test_malformed_manifest(packed, tmp_path):
    model_dir = copy(packed(NAME), tmp_path / "m")
    (model_dir / "moeflux.json").write_text("[1, 2")
    with pytest.raises(moeflux.FormatError, match="moeflux.json"):
        moeflux.Model(model_dir)


def test_truncated_dense_file(packed, tmp_path):
    model_dir = copy(packed(NAME), tmp_path / "m")
    data = (model_dir / "dense.bin").read_bytes()
    (model_dir / "dense.bin").write_bytes(data[:-4096])
    with pytest.raises(moeflux.FormatError, match="dense.bin"):
        moeflux.Model(model_dir)


def test_truncated_expert_file(packed, tmp_path):
    model_dir = copy(packed(NAME), tmp_path / "m")
    expert_file = sorted((model_dir / "experts").iterdir())[0]
    expert_file.write_bytes(expert_file.read_bytes()[:100])
    with pytest.raises(moeflux.FormatError, match=expert_file.name):
        moeflux.Model(model_dir)


def test_packed_model_whose_config_disagrees(packed, tmp_path):
    model_dir = copy(packed(NAME), tmp_path / "m")
    edit_config(model_dir, moe_intermediate_size=48)
    with pytest.raises(moeflux.FormatError, match="experts"):
        moeflux.Model(model_dir)


# ---- calls on an open model
def test_bad_token_ids_keep_the_session_usable(packed):
    model = moeflux.Model(packed(NAME))
    first = model.forward([1, 2, 3])
    with pytest.raises(moeflux.ShapeError, match="vocabulary"):
        model.forward([5, 10_000])
    with pytest.raises(moeflux.ShapeError, match="at least one"):
        model.forward([])
    with pytest.raises(TypeError):
        model.forward(np.array([1.0, 2.0]))
    with pytest.raises(ValueError):
        model.forward(np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError):
        model.forward([-1])
    assert model.n_past == 3 and model.routing.experts.shape[0] == 3
    model.reset()
    np.testing.assert_array_equal(model.forward([1, 2, 3]), first)


def test_bad_generation_options(packed):
    model = moeflux.Model(packed(NAME))
    with pytest.raises(moeflux.ConfigError, match="temperature"):
        model.generate([1, 2], temperature=-1.0)
    with pytest.raises(moeflux.ConfigError, match="top_p"):
        model.generate([1, 2], temperature=1.0, top_p=0.0)
    with pytest.raises(moeflux.ConfigError, match="experts_per_token"):
        moeflux.Model(packed(NAME), experts_per_token=99)
    with pytest.raises(moeflux.Unsupported, match="backend"):
        moeflux.Model(packed(NAME), backend="quantum")
