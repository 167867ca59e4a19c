"""The expert store seen from the engine: output bit-identical whatever the budget and I/O path,
budgets that cannot work refused, read errors raised without breaking the session, and no
expert read more often than needed."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

import moeflux
from compare import record_stride

NAME = "qwen3_moe_base"  # 3 MoE layers of 8 experts, top-2
PROMPT = np.array([5, 17, 3, 99, 42, 7, 150, 8, 61, 23, 2, 77, 130, 45, 9, 11], dtype=np.int32)


def run(model: moeflux.Model) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Prefill, token-by-token decode and greedy generation in one session."""
    logits = [model.forward(PROMPT[:10])]
    for t in PROMPT[10:]:
        logits.append(model.forward([int(t)]))
    tokens = list(model.generate_tokens([3], max_new_tokens=8, stop_tokens=[]))
    return np.concatenate(logits), model.routing.experts, tokens


@pytest.fixture(scope="module")
def reference(packed):
    return run(moeflux.Model(packed(NAME)))


def budgets(stride: int, k: int, n_experts: int, n_moe: int) -> dict[str, int | None]:
    return {
        "smallest": k * stride,
        "shared_pool": (n_moe * k - 1) * stride,
        "half": n_moe * n_experts * stride // 2,
        "all": None,
    }


@pytest.mark.parametrize("budget", ["smallest", "shared_pool", "half", "all"])
@pytest.mark.parametrize("io", ["direct", "buffered"])
def test_output_is_bit_identical_whatever_the_budget(budget, io, packed, reference):
    path = packed(NAME)
    probe = moeflux.Model(path)
    info = probe.info
    size = budgets(record_stride(path), info["experts_per_token"], info["n_experts"], len(info["moe_layers"]))[budget]
    model = moeflux.Model(path, cache_bytes=size, io=io)
    logits, experts, tokens = run(model)
    np.testing.assert_array_equal(logits, reference[0])
    np.testing.assert_array_equal(experts, reference[1])
    assert tokens == reference[2]
    stats = model.stats()
    assert stats["io"] in ("direct", "buffered") and (io == "direct" or stats["io"] == "buffered")
    if size is not None:
        assert stats["cache_bytes"] <= size
    # The same again after reset(): the cache's contents change nothing.
    model.reset()
    again = run(model)
    np.testing.assert_array_equal(again[0], reference[0])
    assert again[2] == reference[2]


def test_a_budget_below_one_layers_top_k_is_refused(packed):
    path = packed(NAME)
    stride = record_stride(path)
    with pytest.raises(moeflux.BudgetError) as error:
        moeflux.Model(path, cache_bytes=stride)  # top-2 needs two records
    message = str(error.value)
    assert str(2 * stride) in message and "dense" in message
    assert isinstance(error.value, ValueError)


def test_each_expert_is_read_at_most_once_when_everything_fits(packed):
    model = moeflux.Model(packed(NAME))
    model.reset_stats()
    run(model)
    model.reset()
    run(model)
    stats = model.stats()
    info = model.info
    distinct = len({(j, e) for j in range(len(info["moe_layers"])) for e in np.unique(model.routing.experts[:, j, :])})
    # Both runs route identically, so the second reads nothing: every distinct expert once.
    assert stats["expert_misses"] == distinct
    assert stats["expert_bytes_read"] == distinct * record_stride(packed(NAME))
    assert stats["expert_hits"] > 0


def test_decode_reads_no_expert_twice_within_a_token(packed):
    path = packed(NAME)
    model = moeflux.Model(path, cache_bytes=2 * record_stride(path))  # everything misses
    model.forward(PROMPT[:4])
    model.reset_stats()
    model.forward([7])
    stats = model.stats()
    k, n_moe = model.info["experts_per_token"], len(model.info["moe_layers"])
    assert stats["expert_hits"] + stats["expert_misses"] == k * n_moe
    assert stats["expert_misses"] <= k * n_moe


def test_a_read_error_raises_and_the_session_recovers(packed, reference):
    path = packed(NAME)
    model = moeflux.Model(path, cache_bytes=2 * record_stride(path))
    model.forward(PROMPT[:3])
    model._inject_read_errors(errno.EIO, count=1)
    with pytest.raises(moeflux.IoError) as error:
        model.forward(PROMPT[3:6])
    assert isinstance(error.value, OSError) and "layer" in str(error.value)
    assert model.n_past == 3  # the failed call left the session where it was
    model.reset()
    logits, experts, tokens = run(model)
    np.testing.assert_array_equal(logits, reference[0])
    assert tokens == reference[2]


def test_an_expert_file_changed_underneath_is_an_error_not_a_crash(packed, tmp_path):
    import shutil

    path = Path(shutil.copytree(packed(NAME), tmp_path / "m"))
    model = moeflux.Model(path, cache_bytes=2 * record_stride(path))
    expert_file = sorted((path / "experts").iterdir())[0]
    os.truncate(expert_file, 4096)
    with pytest.raises((moeflux.FormatError, moeflux.IoError)):
        for t in PROMPT:
            model.forward([int(t)])
    os.truncate(expert_file, 0)
    with pytest.raises(moeflux.FormatError, match=expert_file.name):
        moeflux.Model(path)
