"""Tests for moeflux.default_model: the built-in random Qwen3-MoE checkpoint."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys
from types import ModuleType

import pytest

MODULE_PATH = pathlib.Path(__file__).resolve().parents[2] / "python" / "moeflux" / "default_model.py"


def _load_module() -> ModuleType:
    # Loaded by path so the test runs even when the package is not importable.
    spec = importlib.util.spec_from_file_location("moeflux_default_model_under_test", MODULE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


dm = _load_module()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return dm.write_default_checkpoint(tmp_path_factory.mktemp("ckpt") / "default")


def test_files_and_config(checkpoint: pathlib.Path) -> None:
    for name in ("config.json", "model.safetensors", "tokenizer.json",
                 "tokenizer_config.json", "generation_config.json"):
        assert (checkpoint / name).is_file(), name
    assert not [p for p in checkpoint.parent.iterdir() if p.name.startswith(".")], "temp dir left behind"
    cfg = json.loads((checkpoint / "config.json").read_text())
    assert cfg == dm.DEFAULT_MODEL_CONFIG
    assert cfg["model_type"] == "qwen3_moe"
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    assert tok.get_vocab_size() == cfg["vocab_size"] == 1024
    assert tok.token_to_id("<|endoftext|>") == cfg["bos_token_id"]
    assert tok.token_to_id("<|im_end|>") == cfg["eos_token_id"]
    assert tok.token_to_id("<|im_start|>") is not None


def test_tensor_names_and_shapes(checkpoint: pathlib.Path) -> None:
    from safetensors.numpy import load_file

    w = load_file(str(checkpoint / "model.safetensors"))
    cfg = dm.DEFAULT_MODEL_CONFIG
    hid, vocab, hd = cfg["hidden_size"], cfg["vocab_size"], cfg["head_dim"]
    assert w["model.embed_tokens.weight"].shape == (vocab, hid)
    assert w["lm_head.weight"].shape == (vocab, hid)
    assert w["model.layers.0.mlp.gate_proj.weight"].shape == (cfg["intermediate_size"], hid)
    assert "model.layers.0.mlp.gate.weight" not in w
    assert w["model.layers.1.mlp.gate.weight"].shape == (cfg["num_experts"], hid)
    last = cfg["num_experts"] - 1
    assert w[f"model.layers.7.mlp.experts.{last}.down_proj.weight"].shape == (hid, cfg["moe_intermediate_size"])
    assert w["model.layers.3.self_attn.k_proj.weight"].shape == (cfg["num_key_value_heads"] * hd, hid)
    assert w["model.layers.3.self_attn.q_norm.weight"].shape == (hd,)
    assert all(a.dtype.name == "float32" for a in w.values())


def test_loads_in_transformers_and_generates_varied_tokens(checkpoint: pathlib.Path) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer

    model, info = transformers.AutoModelForCausalLM.from_pretrained(
        checkpoint, dtype=torch.float32, output_loading_info=True)
    assert not info["missing_keys"], info["missing_keys"]
    assert not info["unexpected_keys"], info["unexpected_keys"]
    assert not info["mismatched_keys"], info["mismatched_keys"]
    model.eval()

    tok = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    ids = tok.encode("The small river ran past the mill and").ids
    new: list[int] = []
    with torch.no_grad():  # plain greedy loop, independent of generation_config / eos
        for _ in range(16):
            logits = model(torch.tensor([ids + new])).logits
            new.append(int(logits[0, -1].argmax()))
    assert len(set(new)) >= 4, new


def test_tokenizer_round_trips_utf8(checkpoint: pathlib.Path) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    text = "Grüße aus Köln — naïve café, 東京タワー, emoji 🚀🧪!\n\ttabs  and  spaces "
    enc = tok.encode(text)
    assert tok.decode(enc.ids) == text


def test_deterministic(tmp_path: pathlib.Path, checkpoint: pathlib.Path) -> None:
    again = dm.write_default_checkpoint(tmp_path / "again", seed=0)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (checkpoint / name).read_bytes(), name


def test_existing_checkpoint_left_alone(checkpoint: pathlib.Path) -> None:
    before = (checkpoint / "model.safetensors").stat().st_mtime_ns
    assert dm.write_default_checkpoint(checkpoint, seed=123) == checkpoint
    assert (checkpoint / "model.safetensors").stat().st_mtime_ns == before


def test_auto_tokenizer_chat_template(checkpoint: pathlib.Path) -> None:
    transformers = pytest.importorskip("transformers")

    tok = transformers.AutoTokenizer.from_pretrained(checkpoint)
    chat = [{"role": "user", "content": "Hello there!"},
            {"role": "assistant", "content": "Hi, how can I help?"}]
    rendered = tok.apply_chat_template(chat, tokenize=False)
    assert "<|im_start|>" in rendered and "<|im_end|>" in rendered
    assert rendered.startswith("<|im_start|>user\nHello there!<|im_end|>\n")
    ids = tok.apply_chat_template(chat[:1], tokenize=True, add_generation_prompt=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert tok.decode(ids) == "<|im_start|>user\nHello there!<|im_end|>\n<|im_start|>assistant\n"
