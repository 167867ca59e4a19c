"""The Qwen3-MoE / Qwen2-MoE forward pass on the Vulkan backend beyond the comparison with
transformers (test_against_transformers.py): bit-identical output whatever the expert cache budget,
and quantized conversions against the CPU backend on the same packed model. Skipped where no usable
Vulkan device exists; run with MOEFLUX_VULKAN_VALIDATION=1, a validation message fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import compare
import moeflux
from compare import relative_error, vulkan

NAMES = list(compare.QWEN3_MOE.names)
TOLERANCE = compare.TOLERANCE["vulkan"]

pytestmark = compare.requires_vulkan


def run(model: moeflux.Model, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """A prefill, token-by-token decode and greedy generation in one session."""
    split = len(ids) - 6
    logits = [model.forward(ids[:split])] + [model.forward(ids[i : i + 1]) for i in range(split, len(ids))]
    tokens = list(model.generate_tokens([3], max_new_tokens=6, stop_tokens=[]))
    return np.concatenate(logits), model.routing.experts, tokens


@pytest.mark.parametrize("name", NAMES)
def test_logits_are_bit_identical_whatever_the_cache_budget(name, packed):
    path = packed(name)
    compare.check_budgets("vulkan", path, compare.QWEN3_MOE.prompt(vulkan(path).info["vocab_size"]), run)


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
    ids = compare.QWEN3_MOE.prompt(cpu.info["vocab_size"])
    want = run(cpu, ids)
    got = compare.check_budgets("vulkan", path, ids, run)
    assert relative_error(got[0], want[0]) < TOLERANCE
    np.testing.assert_array_equal(got[1], want[1])
    assert got[2] == want[2]
