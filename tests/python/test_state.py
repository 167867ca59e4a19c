"""Saved state: save after a prompt, load into a fresh Model, continue, and get the logits of an
uninterrupted run bit for bit; the same for the sampler's generator; states of other models and
damaged files are refused with a clear error and leave the session as it was."""

from __future__ import annotations

import numpy as np
import pytest

import chat_models
import moeflux

NAME = "qwen3_moe_base"
PROMPT = [5, 9, 2, 7, 11, 3, 8, 1, 13]


def _backends() -> list[str]:
    try:
        usable = any(d.get("usable") for d in moeflux.devices())
    except moeflux.Error:
        usable = False
    return ["cpu", "vulkan"] if usable else ["cpu"]


@pytest.mark.parametrize("backend", _backends())
def test_load_into_a_fresh_model_continues_bit_for_bit(packed, backend, tmp_path):
    path = packed(NAME)
    whole = moeflux.Model(path, backend=backend, record_router_logits=True)
    whole.forward(PROMPT)
    want = whole.forward([4, 6])

    first = moeflux.Model(path, backend=backend, record_router_logits=True)
    first.forward(PROMPT)
    data = first.save_state()
    first.save_state(tmp_path / "prompt.mfstate")
    for source in (data, tmp_path / "prompt.mfstate", str(tmp_path / "prompt.mfstate")):
        resumed = moeflux.Model(path, backend=backend, record_router_logits=True)
        resumed.load_state(source)
        assert resumed.n_past == len(PROMPT) and resumed.tokens.tolist() == PROMPT
        np.testing.assert_array_equal(resumed.forward([4, 6]), want)
        np.testing.assert_array_equal(resumed.routing.experts, whole.routing.experts)
        np.testing.assert_array_equal(resumed.routing.router_logits, whole.routing.router_logits)


def test_a_shared_prefix_is_computed_once(packed):
    path = packed(NAME)
    model = moeflux.Model(path)
    model.forward(PROMPT)
    prefix = model.save_state()
    answers = {}
    for suffix in ([4], [6, 10]):
        model.load_state(prefix)
        answers[tuple(suffix)] = model.forward(suffix, logits="last")
        reference = moeflux.Model(path)
        reference.forward(PROMPT)
        np.testing.assert_array_equal(reference.forward(suffix, logits="last"), answers[tuple(suffix)])


def test_the_sampler_generator_is_part_of_the_state(packed):
    path = packed(NAME)
    model = moeflux.Model(path)
    last = list(model.generate_tokens(PROMPT, max_new_tokens=3, stop_tokens=[], do_sample=True, seed=21))[-1]
    saved = model.save_state()  # the last token is not in the cache yet: it is the next prompt
    go_on = list(model.generate_tokens([last], max_new_tokens=8, stop_tokens=[], do_sample=True, temperature=1.5))
    resumed = moeflux.Model(path)
    resumed.load_state(saved)
    assert list(resumed.generate_tokens([last], max_new_tokens=8, stop_tokens=[], do_sample=True, temperature=1.5)) == go_on


def test_a_chat_resumes_from_its_file(tmp_path_factory, tmp_path):
    packed_chat = chat_models.chat_model(tmp_path_factory)[1]
    model = moeflux.Model(packed_chat)
    chat = model.chat(system="Be brief.")
    chat.send("Hello", max_new_tokens=5, do_sample=False)
    chat.save(tmp_path / "chat.mfstate")
    want = chat.send("More?", max_new_tokens=5, do_sample=False)

    other = moeflux.Model(packed_chat).chat()
    other.load(tmp_path / "chat.mfstate")
    assert other.system == "Be brief." and len(other.messages) == 3
    got = other.send("More?", max_new_tokens=5, do_sample=False)
    assert got.token_ids == want.token_ids
    assert got.prompt_tokens_computed == want.prompt_tokens_computed  # the loaded state was reused
    plain = moeflux.Model(packed_chat)
    plain.forward([1, 2])
    plain.save_state(tmp_path / "plain.mfstate")
    with pytest.raises(moeflux.FormatError, match="no chat"):
        other.load(tmp_path / "plain.mfstate")


def test_another_model_is_refused(packed, tmp_path):
    a = moeflux.Model(packed(NAME))
    a.forward(PROMPT)
    a.save_state(tmp_path / "a.mfstate")
    b = moeflux.Model(packed("qwen3_moe_k1_unnormalized"))
    b.forward([1, 2])
    with pytest.raises(moeflux.ConfigError, match="belongs to another model"):
        b.load_state(tmp_path / "a.mfstate")
    assert b.n_past == 2  # untouched
    c = moeflux.Model(packed(NAME), experts_per_token=1)
    with pytest.raises(moeflux.ConfigError, match="experts_per_token"):
        c.load_state(tmp_path / "a.mfstate")


def test_damaged_files_are_refused(packed, tmp_path):
    model = moeflux.Model(packed(NAME))
    model.forward(PROMPT)
    data = bytearray(model.save_state())
    model.forward([3])
    cases = {
        "flipped": data[:1000] + bytes([data[1000] ^ 1]) + data[1001:],
        "truncated": data[: len(data) // 2],
        "not a state": b"hello world, not a state file at all",
        "other version": data[:8] + (99).to_bytes(4, "little") + data[12:],
    }
    messages = {"flipped": "damaged", "truncated": "damaged", "not a state": "not a moeflux state file",
                "other version": "format version 99"}
    for name, blob in cases.items():
        with pytest.raises(moeflux.FormatError, match=messages[name]):
            model.load_state(bytes(blob))
        assert model.n_past == len(PROMPT) + 1, name  # the session is as it was
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(moeflux.FormatError, match="empty"):
        model.load_state(tmp_path / "empty")
    with pytest.raises(moeflux.IoError):
        model.load_state(tmp_path / "missing")


def test_truncate_keeps_a_prefix(packed):
    model = moeflux.Model(packed(NAME))
    want = model.forward(PROMPT)
    model.forward([4, 4, 4])
    model.truncate(5)
    assert model.n_past == 5 and model.routing.experts.shape[0] == 5
    np.testing.assert_allclose(model.forward(PROMPT[5:]), want[5:], rtol=1e-5, atol=1e-5)
    with pytest.raises(moeflux.ShapeError):
        model.truncate(100)
