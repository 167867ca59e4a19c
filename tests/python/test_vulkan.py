"""The whole Qwen3-MoE / Qwen2-MoE forward pass on the Vulkan backend: against transformers (logits,
routing, greedy generation), prefill against decode, bit-identical logits whatever the expert cache
budget, and quantized conversions against the CPU backend on the same packed model. Skipped where
no usable Vulkan device exists; run with MOEFLUX_VULKAN_VALIDATION=1, a validation message fails."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import moeflux
import tiny_models
from test_qwen3_moe import prompt, reference_runs, relative_error  # noqa: F401 (reference_runs: a fixture)

NAMES = list(tiny_models.CONFIGS)
TOLERANCE = 1e-4  # Vulkan sums in other orders than transformers and the CPU (docs/VULKAN.md)


def _usable() -> bool:
    try:
        return any(d["usable"] for d in moeflux.devices())
    except moeflux.Unsupported:  # built without Vulkan
        return False


# The test command (scripts/test.sh) installs lavapipe and sets MOEFLUX_REQUIRE_VULKAN, so there a
# missing device fails instead of skipping.
pytestmark = pytest.mark.skipif(
    not os.environ.get("MOEFLUX_REQUIRE_VULKAN") and not _usable(), reason="unsupported: no usable Vulkan device"
)


def vulkan(path: Path, **options) -> moeflux.Model:
    return moeflux.Model(path, backend="vulkan", **options)


def run(model: moeflux.Model, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """A prefill, token-by-token decode and greedy generation in one session."""
    split = len(ids) - 6
    logits = [model.forward(ids[:split])] + [model.forward(ids[i : i + 1]) for i in range(split, len(ids))]
    tokens = list(model.generate([3], max_new_tokens=6, stop_tokens=[]))
    return np.concatenate(logits), model.routing.experts, tokens


@pytest.mark.parametrize("name", NAMES)
def test_logits_and_routing_match_transformers(name, packed, reference_runs):
    ids, logits_ref, experts_ref, weights_ref, router_ref, layers, _ = reference_runs(name)
    model = vulkan(packed(name), record_router_logits=True)
    logits = model.forward(ids)
    assert logits.shape == logits_ref.shape and logits.dtype == np.float32
    assert relative_error(logits, logits_ref) < TOLERANCE
    routing = model.routing
    assert routing.moe_layers == tuple(layers)
    np.testing.assert_array_equal(routing.experts, experts_ref)
    np.testing.assert_allclose(routing.weights, weights_ref, rtol=TOLERANCE, atol=1e-6)
    assert relative_error(routing.router_logits, router_ref) < TOLERANCE


@pytest.mark.parametrize("name", NAMES)
def test_prefill_equals_token_by_token_decode(name, packed, reference_runs):
    ids, logits_ref, *_ = reference_runs(name)
    model = vulkan(packed(name))
    prefill = model.forward(ids)
    prefill_experts = model.routing.experts
    model.reset()
    decoded = np.concatenate([model.forward(ids[i : i + 1]) for i in range(len(ids))])
    assert relative_error(decoded, prefill) < TOLERANCE
    assert relative_error(decoded, logits_ref) < TOLERANCE
    np.testing.assert_array_equal(model.routing.experts, prefill_experts)
    model.reset()  # uneven chunks: the split attention pass (5, 7 rows) and query tiles (12)
    chunked = np.concatenate([model.forward(ids[:5]), model.forward(ids[5:17]), model.forward(ids[17:])])
    assert relative_error(chunked, prefill) < TOLERANCE


@pytest.mark.parametrize("name", NAMES)
def test_greedy_generation_matches_transformers(name, packed, reference_runs):
    ids, *_, reference = reference_runs(name)
    expected = tiny_models.greedy_tokens(reference, ids, 32)
    model = vulkan(packed(name))
    assert list(model.generate(ids, max_new_tokens=32, stop_tokens=[])) == expected


def budgets(path: Path, model: moeflux.Model) -> dict[str, int | None]:
    manifest = json.loads((path / "moeflux.json").read_text())
    stride = max(layer["stride"] for layer in manifest["experts"]["layers"])
    info = model.info
    total = len(info["moe_layers"]) * info["n_experts"] * stride
    return {"smallest": info["experts_per_token"] * stride, "half": total // 2, "all": None}


def check_budgets(path: Path, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """run() under every budget: identical bits; returns the result."""
    results = {}
    for budget, size in budgets(path, vulkan(path)).items():
        results[budget] = run(vulkan(path, cache_bytes=size), ids)
    want = results["all"]
    for budget, got in results.items():
        np.testing.assert_array_equal(got[0], want[0], err_msg=budget)
        np.testing.assert_array_equal(got[1], want[1], err_msg=budget)
        assert got[2] == want[2], budget
    return want


@pytest.mark.parametrize("name", NAMES)
def test_logits_are_bit_identical_whatever_the_cache_budget(name, packed):
    path = packed(name)
    check_budgets(path, prompt(vulkan(path).info["vocab_size"]))


QUANTIZED = {"q4_experts": dict(expert_bits=4), "q4_all": dict(expert_bits=4, dense_bits=4)}


@pytest.fixture(scope="module")
def packed_quantized(checkpoint, tmp_path_factory):
    """packed_quantized(name, kind) -> the tiny model converted with QUANTIZED[kind] in groups of 32."""
    made: dict[tuple[str, str], Path] = {}

    def get(name: str, kind: str) -> Path | None:
        if (name, kind) not in made:
            dst = tmp_path_factory.mktemp(f"packed-{kind}-{name}")
            try:
                moeflux.convert(checkpoint(name), dst, group_size=32, progress=False, **QUANTIZED[kind])
                made[(name, kind)] = dst
            except moeflux.ConfigError as error:
                # Rows the group size does not divide (odd test sizes) must be refused, and are.
                assert "group" in str(error)
                made[(name, kind)] = None
        return made[(name, kind)]

    return get


@pytest.mark.parametrize("kind", list(QUANTIZED))
@pytest.mark.parametrize("name", NAMES)
def test_quantized_models_match_the_cpu_backend(name, kind, packed_quantized):
    path = packed_quantized(name, kind)
    if path is None:  # the converter refused this size (asserted in the fixture)
        return
    cpu = moeflux.Model(path)
    ids = prompt(cpu.info["vocab_size"])
    want = run(cpu, ids)
    got = check_budgets(path, ids)
    assert relative_error(got[0], want[0]) < TOLERANCE
    np.testing.assert_array_equal(got[1], want[1])
    assert got[2] == want[2]
