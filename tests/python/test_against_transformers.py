"""Every tiny model (Qwen3-MoE, Qwen2-MoE with a shared expert, the Qwen3-Next / Qwen3.5 hybrid) on
every backend against transformers: logits and routing, prefill versus decode and prefill in
chunks, greedy generation. The hybrid's prompt is long enough for two chunks of the chunked delta
rule. Vulkan cases are skipped where no usable Vulkan device exists; run with
MOEFLUX_VULKAN_VALIDATION=1, a validation message fails."""

from __future__ import annotations

import pytest

import compare
from compare import BACKENDS, TOLERANCE

NAMES = list(compare.QWEN3_MOE.names + compare.HYBRID.names)


@pytest.fixture(scope="module")
def reference_runs(checkpoint):
    """reference_runs(name) -> compare.Reference: transformers' run over the family's prompt."""
    runs: dict[str, compare.Reference] = {}

    def get(name: str) -> compare.Reference:
        if name not in runs:
            runs[name] = compare.reference_run(checkpoint(name), name)
        return runs[name]

    return get


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_logits_and_routing_match_transformers(backend, name, packed, reference_runs):
    model = compare.open_model(backend, packed(name), record_router_logits=True)
    compare.check_logits_and_routing(model, reference_runs(name), TOLERANCE[backend])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_prefill_equals_token_by_token_decode(backend, name, packed, reference_runs):
    model = compare.open_model(backend, packed(name))
    compare.check_prefill_equals_decode(model, reference_runs(name), TOLERANCE[backend])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_greedy_generation_matches_transformers(backend, name, packed, reference_runs):
    model = compare.open_model(backend, packed(name))
    compare.check_greedy_generation(model, reference_runs(name), compare.family(name).greedy_splits)
