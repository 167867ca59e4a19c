"""The Qwen3-Next / Qwen3.5 hybrid on the Vulkan backend: against transformers (logits, routing,
greedy generation), prefill against decode and chunks, and the same output whatever the expert
cache budget. Skipped where no usable Vulkan device exists (scripts/test.sh requires one)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import moeflux
import tiny_models
from test_qwen3_next import prompt, reference_runs, relative_error, session_run  # noqa: F401 (a fixture)
from test_vulkan import _usable, budgets

NAMES = list(tiny_models.HYBRID_CONFIGS)
TOLERANCE = 1e-4  # Vulkan sums in other orders than transformers and the CPU (docs/VULKAN.md)

pytestmark = pytest.mark.skipif(
    not os.environ.get("MOEFLUX_REQUIRE_VULKAN") and not _usable(), reason="unsupported: no usable Vulkan device"
)


def vulkan(path, **options) -> moeflux.Model:
    return moeflux.Model(path, backend="vulkan", **options)


@pytest.mark.parametrize("name", NAMES)
def test_logits_and_routing_match_transformers(name, packed, reference_runs):
    ids, logits_ref, experts_ref, weights_ref, router_ref, layers, _ = reference_runs(name)
    model = vulkan(packed(name), record_router_logits=True)
    logits = model.forward(ids)
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
    model.reset()
    chunked = np.concatenate([model.forward(ids[:5]), model.forward(ids[5:17]), model.forward(ids[17:])])
    assert relative_error(chunked, logits_ref) < TOLERANCE


@pytest.mark.parametrize("name", NAMES)
def test_greedy_generation_matches_transformers(name, packed, reference_runs):
    ids, *_, reference = reference_runs(name)
    expected = tiny_models.greedy_tokens(reference, ids, 32)
    model = vulkan(packed(name))
    assert list(model.generate_tokens(ids, max_new_tokens=32, stop_tokens=[])) == expected


@pytest.mark.parametrize("name", ["qwen3_next_base", "qwen3_5_moe_vl"])
def test_output_is_bit_identical_whatever_the_budget(name, packed):
    path = packed(name)
    ids = prompt(160)
    sizes = budgets(path, vulkan(path))  # host cache: one layer's top-k, half, everything
    want = session_run(vulkan(path), ids)
    for budget, size in sizes.items():
        got = session_run(vulkan(path, cache_bytes=size), ids)
        np.testing.assert_array_equal(got[0], want[0], err_msg=budget)
        np.testing.assert_array_equal(got[1], want[1], err_msg=budget)
        assert got[2] == want[2], budget
