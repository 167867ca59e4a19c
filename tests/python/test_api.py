"""The Python API: sessions, routing arrays, streaming generation, sampling, the GIL, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import moeflux

NAME = "qwen3_moe_base"


@pytest.fixture()
def model(packed):
    return moeflux.Model(packed(NAME), record_router_logits=True)


def test_routing_accumulates_until_reset(model):
    info = model.info
    n_moe, k, n_experts = len(info["moe_layers"]), info["experts_per_token"], info["n_experts"]
    model.forward([1, 2, 3, 4])
    model.forward([5])
    r = model.routing
    assert r.experts.shape == (5, n_moe, k) and r.experts.dtype == np.int32
    assert r.weights.shape == (5, n_moe, k) and r.weights.dtype == np.float32
    assert r.router_logits.shape == (5, n_moe, n_experts) and r.router_logits.dtype == np.float32
    assert r.experts.flags.c_contiguous and r.experts.flags.owndata is False and r.experts.base is not None
    # Experts are the top-k of the softmax of the recorded logits, in descending order.
    probs = np.exp(r.router_logits - r.router_logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    np.testing.assert_array_equal(np.argsort(-probs, axis=-1, kind="stable")[..., :k], r.experts)
    np.testing.assert_allclose(r.weights.sum(-1), 1.0, rtol=1e-6)  # norm_topk_prob
    np.testing.assert_array_equal(model.tokens, [1, 2, 3, 4, 5])
    model.reset()
    assert model.routing.experts.shape == (0, n_moe, k) and model.n_past == 0


def test_router_logits_are_none_unless_asked_for(packed):
    assert moeflux.Model(packed(NAME)).routing.router_logits is None


def test_last_logits_mode(model):
    ids = [7, 8, 9, 10]
    full = model.forward(ids)
    model.reset()
    last = model.forward(ids, logits="last")
    assert last.shape == (1, full.shape[1])
    np.testing.assert_allclose(last[0], full[-1], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError):
        model.forward([1], logits="some")


def test_generate_streams_and_continues_the_session(model):
    stream = model.generate_tokens([1, 2, 3], max_new_tokens=5, stop_tokens=[])
    first = next(stream)
    assert isinstance(first, int) and model.n_past == 3
    rest = list(stream)
    assert len(rest) == 4 and model.n_past == 7
    assert stream.finish_reason == "length"
    assert list(model.generate_tokens([], max_new_tokens=0)) == []


def test_generation_stops_after_a_stop_token(model):
    greedy = list(model.generate_tokens([1, 2, 3], max_new_tokens=8, stop_tokens=[]))
    model.reset()
    stream = model.generate_tokens([1, 2, 3], max_new_tokens=8, stop_tokens=[greedy[2]])
    assert list(stream) == greedy[: greedy.index(greedy[2]) + 1] and stream.finish_reason == "stop"


def test_the_deprecated_token_form_of_generate_warns_and_gives_the_same_ids(model):
    with pytest.warns(DeprecationWarning, match="generate_tokens"):
        old = list(model.generate([1, 2, 3], max_new_tokens=6, stop_tokens=[]))
    model.reset()
    assert old == list(model.generate_tokens([1, 2, 3], max_new_tokens=6, stop_tokens=[]))


def test_sampling_is_repeatable_and_top_k_1_is_greedy(model):
    def run(**kw):
        model.reset()
        return list(model.generate_tokens([4, 5, 6], max_new_tokens=12, stop_tokens=[], **kw))

    greedy = run()
    assert run(do_sample=False) == greedy
    assert run(temperature=1.0, top_k=1, seed=3) == greedy
    sampled = run(temperature=1.5, seed=7)
    assert run(temperature=1.5, seed=7) == sampled
    assert any(run(temperature=1.5, seed=s) != sampled for s in range(8, 12))
    assert len(run(temperature=0.8, top_p=0.5, seed=1)) == 12


def test_experts_per_token_override(packed):
    model = moeflux.Model(packed(NAME), experts_per_token=1)
    model.forward([1, 2, 3])
    assert model.info["experts_per_token"] == 1
    assert model.routing.experts.shape[-1] == 1
    assert np.allclose(model.routing.weights, 1.0)  # renormalised top-1


def test_the_gil_is_released_while_computing(tmp_path):
    """One long native call: with the GIL held, this thread could not tick until it returned."""
    from moeflux.demo import default_model_path

    model = moeflux.Model(default_model_path(tmp_path), threads=1)
    ids = np.arange(1, 700, dtype=np.int32)
    started, done = threading.Event(), threading.Event()
    ticks_during = 0

    def work():
        started.set()
        model.forward(ids, logits="last")
        done.set()

    worker = threading.Thread(target=work)
    worker.start()
    started.wait()
    while not done.is_set():
        ticks_during += 1
        time.sleep(0.001)
    worker.join()
    assert ticks_during >= 5


def test_stats_count_expert_fetches(model):
    model.reset_stats()
    model.forward([1])
    stats = model.stats()
    n_moe, k = len(model.info["moe_layers"]), model.info["experts_per_token"]
    assert stats["expert_hits"] + stats["expert_misses"] == n_moe * k
    assert stats["expert_bytes_read"] > 0 and stats["dense_bytes"] > 0


def test_text_generation_with_the_default_model(tmp_path):
    from moeflux.demo import default_model_path

    model = moeflux.Model(default_model_path(tmp_path))
    ids = model.tokenize("héllo wörld")
    assert model.detokenize(ids) == "héllo wörld"
    completion = model.generate("The engine", max_new_tokens=6, eos_token_id=[])
    assert completion.text == model.detokenize(completion.token_ids, skip_special_tokens=True)
    assert model.n_past == len(model.tokenize("The engine")) + 5


def test_cli_demo_runs_out_of_the_box(tmp_path):
    env = dict(os.environ, MOEFLUX_HOME=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "moeflux", "demo", "--max-new-tokens", "12"], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert "tok/s" in result.stdout and "layer" in result.stdout
    assert (tmp_path / "default-model" / "moeflux.json").exists()


def test_cli_reports_errors_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "moeflux", "convert", str(tmp_path / "missing"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("moeflux: ConfigError:") and "Traceback" not in result.stderr
