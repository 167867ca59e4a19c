"""The comparison of moeflux with transformers on the tiny models (tiny_models.py), shared by the CPU
and Vulkan tests of both families: prompts, transformers' reference run, the checks of logits,
routing, prefill against decode and greedy generation, and the expert-cache budgets under which the
output must stay bit-identical."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import pytest
import torch

import moeflux
import tiny_models

# Vulkan sums in other orders than transformers and the CPU (docs/VULKAN.md).
TOLERANCE = {"cpu": 1e-5, "vulkan": 1e-4}


def vulkan_usable() -> bool:
    try:
        return any(d["usable"] for d in moeflux.devices())
    except moeflux.Unsupported:  # built without Vulkan
        return False


# The test command (scripts/test.sh) installs lavapipe and sets MOEFLUX_REQUIRE_VULKAN, so there a
# missing device fails instead of skipping.
requires_vulkan = pytest.mark.skipif(
    not os.environ.get("MOEFLUX_REQUIRE_VULKAN") and not vulkan_usable(), reason="unsupported: no usable Vulkan device"
)

# Every backend, as a pytest parameter (Vulkan skipped without a usable device).
BACKENDS = ["cpu", pytest.param("vulkan", marks=requires_vulkan)]


def open_model(backend: str, path: Path, **options: Any) -> moeflux.Model:
    return moeflux.Model(path, backend=backend, **options)


def vulkan(path: Path, **options: Any) -> moeflux.Model:
    return open_model("vulkan", path, **options)


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


@dataclass(frozen=True)
class Family:
    """What the comparison with transformers differs in between the two families of tiny models."""

    names: tuple[str, ...]
    prompt_len: int  # of the prompt compared with transformers
    seed: int
    greedy_splits: tuple[int, ...]  # where a chunked prefill before greedy generation splits; () none

    def prompt(self, vocab: int, n: int | None = None) -> np.ndarray:
        n = self.prompt_len if n is None else n
        return np.random.default_rng(self.seed).integers(0, vocab, size=n).astype(np.int32)


QWEN3_MOE = Family(tuple(tiny_models.CONFIGS), 24, 1, ())
# More than one 64-token chunk of the chunked delta rule, for transformers' and ours; a prefill in
# chunks carries the conv and recurrent states between calls.
HYBRID = Family(tuple(tiny_models.HYBRID_CONFIGS), 70, 3, (9, 40))


def family(name: str) -> Family:
    return HYBRID if name in HYBRID.names else QWEN3_MOE


class Reference(NamedTuple):
    """transformers' run over the prompt: logits, routing (per MoE layer: indices and weights [T, k])
    and router logits, and the model (for greedy generation)."""

    ids: np.ndarray
    logits: np.ndarray
    experts: np.ndarray
    weights: np.ndarray
    router_logits: np.ndarray
    layers: list[int]
    model: Any


def reference_run(checkpoint: Path, name: str) -> Reference:
    model = tiny_models.load_reference(checkpoint)
    ids = family(name).prompt(model.config.vocab_size)
    handles, captured = tiny_models.router_hooks(model)
    with torch.no_grad():
        out = model(torch.from_numpy(ids).long().unsqueeze(0), output_router_logits=True)
    for h in handles:
        h.remove()
    layers = sorted(captured)
    experts = np.stack([captured[L][0][0].numpy() for L in layers], axis=1)
    weights = np.stack([captured[L][0][1].numpy() for L in layers], axis=1)
    router_logits = np.stack([r.numpy() for r in out.router_logits], axis=1)
    return Reference(ids, out.logits[0].numpy(), experts, weights, router_logits, layers, model)


def check_logits_and_routing(model: moeflux.Model, ref: Reference, tolerance: float) -> None:
    """`model` (opened with record_router_logits) over the prompt against transformers."""
    ids = ref.ids
    logits = model.forward(ids)
    assert logits.shape == ref.logits.shape and logits.dtype == np.float32
    assert relative_error(logits, ref.logits) < tolerance

    routing = model.routing
    assert routing.moe_layers == tuple(ref.layers)
    assert routing.experts.dtype == np.int32 and routing.weights.dtype == np.float32
    assert routing.experts.shape == ref.experts.shape == (len(ids), len(ref.layers), model.info["experts_per_token"])
    np.testing.assert_array_equal(routing.experts, ref.experts)
    np.testing.assert_allclose(routing.weights, ref.weights, rtol=tolerance, atol=1e-6)
    assert routing.router_logits.shape == ref.router_logits.shape
    assert relative_error(routing.router_logits, ref.router_logits) < tolerance


def check_prefill_equals_decode(model: moeflux.Model, ref: Reference, tolerance: float) -> None:
    """The prompt as one prefill, token by token and in uneven chunks: the same logits and routing."""
    ids = ref.ids
    prefill = model.forward(ids)
    prefill_experts = model.routing.experts
    model.reset()  # clears the KV caches (and the hybrid's conv and recurrent states)
    assert model.n_past == 0 and model.routing.experts.shape[0] == 0
    decoded = np.concatenate([model.forward(ids[i : i + 1]) for i in range(len(ids))])
    assert model.n_past == len(ids)
    assert relative_error(decoded, prefill) < tolerance
    assert relative_error(decoded, ref.logits) < tolerance
    np.testing.assert_array_equal(model.routing.experts, prefill_experts)
    # A prefill in uneven chunks continues the same sequence. On Vulkan: the split attention pass
    # (5, 7 rows) and query tiles (12).
    model.reset()
    chunked = np.concatenate([model.forward(ids[:5]), model.forward(ids[5:17]), model.forward(ids[17:])])
    assert relative_error(chunked, prefill) < tolerance
    assert relative_error(chunked, ref.logits) < tolerance


def check_greedy_generation(model: moeflux.Model, ref: Reference, splits: tuple[int, ...]) -> None:
    """32 greedy tokens after the prompt: transformers' tokens; with `splits`, the same tokens again
    after a prefill of all but the last prompt token in chunks split at those positions."""
    ids = ref.ids
    expected = tiny_models.greedy_tokens(ref.model, ids, 32)
    assert list(model.generate_tokens(ids, max_new_tokens=32, stop_tokens=[])) == expected
    assert model.n_past == len(ids) + 31  # the last token is sampled, not yet fed
    if splits:
        model.reset()
        for start, end in zip((0,) + splits, splits + (len(ids) - 1,)):
            model.forward(ids[start:end])
        assert list(model.generate_tokens(ids[-1:], max_new_tokens=32, stop_tokens=[])) == expected


def record_stride(model_dir: Path) -> int:
    manifest = json.loads((model_dir / "moeflux.json").read_text())
    return max(layer["stride"] for layer in manifest["experts"]["layers"])


def budgets(path: Path, model: moeflux.Model) -> dict[str, int | None]:
    """Host expert-cache budgets: one layer's top-k, half of every record, everything."""
    stride = record_stride(path)
    info = model.info
    total = len(info["moe_layers"]) * info["n_experts"] * stride
    return {"smallest": info["experts_per_token"] * stride, "half": total // 2, "all": None}


SessionResult = tuple[np.ndarray, np.ndarray, list[int]]  # logits, experts, generated tokens
Session = Callable[[moeflux.Model, np.ndarray], SessionResult]


def check_budgets(backend: str, path: Path, ids: np.ndarray, session: Session) -> SessionResult:
    """session() on `backend` under every budget: the same bits as without a budget; returns them."""
    model = open_model(backend, path)
    want = session(model, ids)
    for budget, size in budgets(path, model).items():
        got = session(open_model(backend, path, cache_bytes=size), ids)
        np.testing.assert_array_equal(got[0], want[0], err_msg=budget)
        np.testing.assert_array_equal(got[1], want[1], err_msg=budget)
        assert got[2] == want[2], budget
    return want
