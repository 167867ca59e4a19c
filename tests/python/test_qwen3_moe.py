"""Qwen3-MoE (and Qwen2-MoE with a shared expert) on the CPU backend against transformers:
logits, routing, prefill versus decode, greedy generation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import moeflux
import tiny_models

NAMES = list(tiny_models.CONFIGS)
PROMPT_LEN = 24


def prompt(vocab: int, n: int = PROMPT_LEN, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, size=n).astype(np.int32)


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


@pytest.fixture(scope="module")
def reference_runs(checkpoint):
    """transformers' logits, routing (per MoE layer: indices and weights [T, k]) and router logits."""
    runs = {}

    def get(name: str):
        if name not in runs:
            model = tiny_models.load_reference(checkpoint(name))
            ids = prompt(model.config.vocab_size)
            handles, captured = tiny_models.router_hooks(model)
            with torch.no_grad():
                out = model(torch.from_numpy(ids).long().unsqueeze(0), output_router_logits=True)
            for h in handles:
                h.remove()
            layers = sorted(captured)
            experts = np.stack([captured[L][0][0].numpy() for L in layers], axis=1)
            weights = np.stack([captured[L][0][1].numpy() for L in layers], axis=1)
            router_logits = np.stack([r.numpy() for r in out.router_logits], axis=1)
            runs[name] = (ids, out.logits[0].numpy(), experts, weights, router_logits, layers, model)
        return runs[name]

    return get


@pytest.mark.parametrize("name", NAMES)
def test_logits_and_routing_match_transformers(name, packed, reference_runs):
    ids, logits_ref, experts_ref, weights_ref, router_ref, layers, _ = reference_runs(name)
    model = moeflux.Model(packed(name), record_router_logits=True)
    logits = model.forward(ids)
    assert logits.shape == logits_ref.shape and logits.dtype == np.float32
    assert relative_error(logits, logits_ref) < 1e-5

    routing = model.routing
    assert routing.moe_layers == tuple(layers)
    assert routing.experts.dtype == np.int32 and routing.weights.dtype == np.float32
    assert routing.experts.shape == experts_ref.shape == (len(ids), len(layers), model.info["experts_per_token"])
    np.testing.assert_array_equal(routing.experts, experts_ref)
    np.testing.assert_allclose(routing.weights, weights_ref, rtol=1e-5, atol=1e-6)
    assert routing.router_logits.shape == router_ref.shape
    assert relative_error(routing.router_logits, router_ref) < 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_prefill_equals_token_by_token_decode(name, packed, reference_runs):
    ids, logits_ref, *_ = reference_runs(name)
    model = moeflux.Model(packed(name))
    prefill = model.forward(ids)
    prefill_experts = model.routing.experts
    model.reset()
    assert model.n_past == 0 and model.routing.experts.shape[0] == 0
    decoded = np.concatenate([model.forward(ids[i : i + 1]) for i in range(len(ids))])
    assert model.n_past == len(ids)
    assert relative_error(decoded, prefill) < 1e-5
    assert relative_error(decoded, logits_ref) < 1e-5
    np.testing.assert_array_equal(model.routing.experts, prefill_experts)
    # A prefill in uneven chunks continues the same sequence.
    model.reset()
    chunked = np.concatenate([model.forward(ids[:5]), model.forward(ids[5:17]), model.forward(ids[17:])])
    assert relative_error(chunked, prefill) < 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_greedy_generation_matches_transformers(name, packed, reference_runs):
    ids, *_, reference = reference_runs(name)
    expected = tiny_models.greedy_tokens(reference, ids, 32)
    model = moeflux.Model(packed(name))
    generated = list(model.generate(ids, max_new_tokens=32, stop_tokens=[]))
    assert generated == expected
    assert model.n_past == len(ids) + 31  # the last token is sampled, not yet fed
