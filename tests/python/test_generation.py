"""Text out: sampling through the model (seeds, top_k = 1, defaults from generation_config.json),
stop tokens and stop strings, streaming chunks, tool calls parsed from the stream, and chats that
compute only their new tokens."""

from __future__ import annotations

import numpy as np
import pytest

import chat_models
import moeflux
from moeflux.generation import Stream
from moeflux.tool_calls import TaggedCallParser, parse_tool_calls

USER = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture(scope="module")
def packed_chat(tmp_path_factory):
    return chat_models.chat_model(tmp_path_factory)[1]


@pytest.fixture()
def model(packed_chat):
    return moeflux.Model(packed_chat)


def test_fixed_seed_repeats_and_top_k_1_is_greedy(model):
    def run(**kw):
        model.reset()
        return model.generate("Hello", max_new_tokens=16, eos_token_id=[], **kw).token_ids

    greedy = run(do_sample=False)
    assert run(do_sample=True, top_k=1, temperature=1.3, seed=3) == greedy
    sampled = run(temperature=1.5, top_k=0, seed=7)
    assert run(temperature=1.5, top_k=0, seed=7) == sampled
    assert any(run(temperature=1.5, top_k=0, seed=s) != sampled for s in range(8, 12))
    # Every sampling option together still repeats.
    kw = dict(temperature=0.9, top_k=40, top_p=0.9, min_p=0.05, repetition_penalty=1.3, presence_penalty=0.5,
              frequency_penalty=0.2, seed=11)
    assert run(**kw) == run(**kw)


def test_defaults_come_from_generation_config(model):
    """generation_config.json says do_sample with temperature 0.7: two unseeded runs go on with the
    session's generator, so they differ; the same seed repeats."""
    first = model.generate("Hello", max_new_tokens=24, eos_token_id=[], seed=5).token_ids
    model.reset()
    again = model.generate("Hello", max_new_tokens=24, eos_token_id=[], seed=5).token_ids
    assert first == again
    model.reset()
    greedy = model.generate("Hello", max_new_tokens=24, eos_token_id=[], do_sample=False).token_ids
    assert greedy != first  # the model's own sampling defaults were used


def test_stream_chunks_add_up_to_the_completion(model):
    stream = model.generate("Hello", max_new_tokens=12, eos_token_id=[], do_sample=False, stream=True)
    chunks = list(stream)
    assert [len(c.token_ids) for c in chunks] == [1] * 12 + [0]
    assert [c.finish_reason for c in chunks] == [None] * 12 + ["length"]
    completion = stream.completion
    assert "".join(c.text for c in chunks) == completion.text
    assert completion.token_ids == [t for c in chunks for t in c.token_ids]
    assert completion.text == model.detokenize(completion.token_ids, skip_special_tokens=True)


def test_stop_tokens_and_stop_strings(model):
    greedy = model.generate("Hello", max_new_tokens=20, eos_token_id=[], do_sample=False)
    model.reset()
    stopped = model.generate("Hello", max_new_tokens=20, eos_token_id=greedy.token_ids[4], do_sample=False)
    assert stopped.finish_reason == "stop" and stopped.token_ids == greedy.token_ids[: greedy.token_ids.index(greedy.token_ids[4]) + 1]
    text = greedy.text
    cut = next(i for i in range(3, len(text)) if text[i - 2 : i].strip())  # a stop string inside the text
    stop = text[cut - 2 : cut]
    model.reset()
    by_string = model.generate("Hello", max_new_tokens=20, eos_token_id=[], do_sample=False, stop_strings=[stop])
    assert by_string.finish_reason == "stop"
    assert by_string.text == text[: text.find(stop)]


def test_chat_turns_compute_only_new_tokens(model):
    chat = model.chat(system="Be brief.")
    first = chat.send("Hello", max_new_tokens=6, do_sample=False)
    n_first = model.n_past
    assert first.prompt_tokens_computed == len(model.apply_chat_template(chat.messages[:2], tokenize=True))
    second = chat.send("And then?", max_new_tokens=6, do_sample=False)
    history = model.apply_chat_template(chat.messages[:-1], tokenize=True)
    assert second.prompt_tokens_computed < len(history) - n_first + 8  # only the new turn, not the history
    # The reused state gives the same reply as computing the whole history afresh.
    fresh = moeflux.Model(model.path)
    assert fresh.generate(chat.messages[:-1], max_new_tokens=6, do_sample=False).token_ids == second.token_ids
    assert [m["role"] for m in chat.messages] == ["system", "user", "assistant", "user", "assistant"]


def test_generate_with_tools_renders_them(model):
    completion = model.generate(USER, tools=[{"type": "function", "function": {"name": "weather", "parameters": {}}}],
                                max_new_tokens=4, do_sample=False)
    assert "weather" in model.detokenize(model.tokens) and isinstance(completion, moeflux.Completion)


def _stream_text(model, text: str) -> moeflux.Completion:
    """Runs `text`'s tokens through the streaming pipeline, as if the model had generated them."""
    ids = model.tokenize(text).tolist()
    return Stream(iter(ids), model.tokenizer.stream_decoder(), TaggedCallParser(), [], 0).collect()


def test_tool_calls_are_parsed_from_the_stream(model):
    text = 'Let me look.\n<tool_call>\n{"name": "weather", "arguments": {"city": "Zürich"}}\n</tool_call>'
    completion = _stream_text(model, text)
    assert completion.text == "Let me look.\n"
    assert [(c.name, c.arguments, c.id) for c in completion.tool_calls] == [("weather", {"city": "Zürich"}, "call_0")]
    assert completion.finish_reason == "length" and not completion.malformed_tool_calls
    assert completion.to_message()["tool_calls"][0]["function"] == {"name": "weather", "arguments": {"city": "Zürich"}}


def test_malformed_tool_calls_come_back_as_text_with_a_flag(model):
    for bad in ['<tool_call>{"name": "weather", "arguments": {"city": </tool_call>',  # broken JSON
                '<tool_call>{"arguments": {}}</tool_call>',  # no name
                'ok <tool_call>{"name": "weather"']:  # never closed
        completion = _stream_text(model, bad)
        assert completion.tool_calls == [] and completion.malformed_tool_calls
        assert completion.text == bad


def _parse_in_pieces(text: str, step: int):
    """The parser's events for `text` fed `step` characters at a time."""
    parser = TaggedCallParser()
    out = parser.feed("")
    for i in range(0, len(text), step):
        out.extend(parser.feed(text[i : i + step]))
    out.extend(parser.finish())
    return out


def test_the_parser_gives_the_same_result_however_the_text_is_split():
    text = 'a <tool_ <tool_call>{"name": "f", "arguments": "{\\"x\\": 1}"}</tool_call> b <tool_call>{"name": "g"}</tool_call>'
    whole = parse_tool_calls(text)
    assert [(c.name, c.arguments) for c in whole.tool_calls] == [("f", {"x": 1}), ("g", {})]
    assert whole.text == "a <tool_  b "
    for step in (1, 2, 5):
        out = _parse_in_pieces(text, step)
        assert (out.text, out.tool_calls) == (whole.text, whole.tool_calls)


def test_the_xml_calls_of_the_qwen3_5_templates_are_parsed():
    call = (
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nZürich\n</parameter>\n"
        '<parameter=days>\n3\n</parameter>\n<parameter=units>\n{"temp": "C"}\n</parameter>\n</function>\n</tool_call>'
    )
    text = "Let me look. " + call + " done"
    whole = parse_tool_calls(text, "qwen3_5_moe")
    assert [(c.name, c.arguments) for c in whole.tool_calls] == [
        ("get_weather", {"city": "Zürich", "days": 3, "units": {"temp": "C"}})
    ]
    assert whole.text == "Let me look.  done" and not whole.malformed
    for step in (1, 3, 7):  # the same however the stream splits it
        out = _parse_in_pieces(text, step)
        assert (out.text, out.tool_calls) == (whole.text, whole.tool_calls)
    # A body that is neither JSON nor a complete function comes back as text, flagged.
    bad = "<tool_call>\n<function=f>\n<parameter=x>\n1\n</parameter>\nstray</function>\n</tool_call>"
    events = parse_tool_calls(bad, "qwen3_5_moe_text")
    assert events.tool_calls == [] and events.malformed == [bad] and events.text == bad
