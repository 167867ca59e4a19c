"""Text in: tokenization equals `tokenizers`, streaming detokenization never breaks a character, and
chat templates render exactly as transformers' apply_chat_template (tools, system prompts,
enable_thinking, whitespace control, loop controls, template errors)."""

from __future__ import annotations

import numpy as np
import pytest
import transformers
from tokenizers import Tokenizer as HfTokenizer

import chat_models
import moeflux

TEXTS = ["Hello there!", "Zürich ☀️🌧️ and Kraków ❄️", "<|im_start|>user\nhi<|im_end|>", " leading  and  double  spaces ", ""]

WEATHER = {"type": "function", "function": {"name": "weather", "description": "Weather of a city, now.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "Ünïcode ok"}},
                          "required": ["city"]}}}
CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_0", "type": "function", "function": {"name": "weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "name": "weather", "tool_call_id": "call_0", "content": "{\"temperature\": 18}"},
        {"role": "assistant", "content": "18 °C."},
        {"role": "user", "content": "And Zürich?"},
    ],
]


@pytest.fixture(scope="module")
def chat(tmp_path_factory):
    return chat_models.chat_model(tmp_path_factory)


@pytest.fixture(scope="module")
def reference(chat):
    return transformers.AutoTokenizer.from_pretrained(chat[0])


def _ids(encoded) -> list[int]:
    """apply_chat_template(tokenize=True) returns a list or a BatchEncoding, by version."""
    return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)


def test_tokenize_equals_tokenizers(chat):
    model = moeflux.Model(chat[1])
    hf = HfTokenizer.from_file(str(chat[0] / "tokenizer.json"))
    for text in TEXTS:
        ids = model.tokenize(text)
        assert ids.dtype == np.int32
        assert ids.tolist() == hf.encode(text, add_special_tokens=False).ids
        assert model.detokenize(ids) == hf.decode(ids.tolist(), skip_special_tokens=False)
    assert model.tokenize("<|im_end|>").tolist() == [chat_models.SPECIAL.index("<|im_end|>")]


def test_stream_decoder_pieces_join_to_the_whole_text(chat):
    tokenizer = moeflux.Tokenizer.from_dir(chat[1])
    for text in TEXTS:
        ids = tokenizer.encode(text)
        decoder = tokenizer.stream_decoder(skip_special_tokens=False)
        pieces = [decoder.add(t) for t in ids] + [decoder.flush()]
        assert "".join(pieces) == tokenizer.decode(ids), text
        assert not any("\ufffd" in p for p in pieces), pieces
    # An emoji is several byte-level tokens: nothing appears until its last byte has come.
    ids = tokenizer.encode("🐙")  # one code point, four bytes the tokenizer never merged
    assert len(ids) > 1
    decoder = tokenizer.stream_decoder()
    assert [decoder.add(t) for t in ids[:-1]] == [""] * (len(ids) - 1)


@pytest.mark.parametrize("index", range(len(CONVERSATIONS)))
@pytest.mark.parametrize("tools", [None, [WEATHER]], ids=["no_tools", "tools"])
@pytest.mark.parametrize("thinking", [None, False], ids=["default", "no_thinking"])
def test_chat_template_equals_transformers(chat, reference, index, tools, thinking):
    model = moeflux.Model(chat[1])
    kwargs = {} if thinking is None else {"enable_thinking": thinking}
    messages = CONVERSATIONS[index]
    want = reference.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True, **kwargs)
    assert model.apply_chat_template(messages, tools=tools, **kwargs) == want
    want_ids = _ids(reference.apply_chat_template(messages, tools=tools, tokenize=True, add_generation_prompt=True, **kwargs))
    assert model.apply_chat_template(messages, tools=tools, tokenize=True, **kwargs).tolist() == want_ids
    if thinking is False:
        assert want.endswith("<think>\n\n</think>\n\n")


def test_layout_template_equals_transformers(tmp_path_factory):
    hf, packed = chat_models.chat_model(tmp_path_factory, chat_models.LAYOUT_TEMPLATE)
    reference = transformers.AutoTokenizer.from_pretrained(hf)
    model = moeflux.Model(packed)
    messages = [{"role": "user", "content": f"  turn {i}  "} if i % 2 == 0 else {"role": "assistant", "content": f"reply {i}"}
                for i in range(5)]
    for tools, prompt in [(None, True), ([WEATHER], False)]:
        want = reference.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=prompt)
        assert model.apply_chat_template(messages, tools=tools, add_generation_prompt=prompt) == want
    assert model.chat_template.end_of_turn == "<|im_end|>"  # the eos_token the template writes after a reply


def test_template_errors_are_typed(chat):
    model = moeflux.Model(chat[1])
    with pytest.raises(moeflux.TemplateError, match="system message must come first"):
        model.apply_chat_template([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}])
    with pytest.raises(moeflux.ConfigError, match="unknown role"):
        model.apply_chat_template([{"role": "robot", "content": "a"}])
    with pytest.raises(moeflux.ConfigError, match="JSON schema"):
        model.apply_chat_template([{"role": "user", "content": "a"}], tools=[print])


def test_stop_tokens_come_from_generation_config_and_the_template(chat):
    model = moeflux.Model(chat[1])
    im_end, eot = chat_models.SPECIAL.index("<|im_end|>"), chat_models.SPECIAL.index("<|endoftext|>")
    assert model.eos_token_ids == [im_end, eot]  # a list in generation_config.json
    assert model.chat_template.end_of_turn == "<|im_end|>"
    assert set(model.stop_token_ids) == {im_end, eot}


def test_models_without_a_tokenizer_say_so(packed):
    model = moeflux.Model(packed("qwen3_moe_base"))
    with pytest.raises(moeflux.FormatError, match="no tokenizer.json"):
        model.tokenize("hello")
    with pytest.raises(moeflux.FormatError, match="no chat template"):
        model.generate([{"role": "user", "content": "hi"}])
    completion = model.generate([1, 2, 3], max_new_tokens=3, do_sample=False, eos_token_id=[])
    assert len(completion.token_ids) == 3 and completion.text == "" and completion.finish_reason == "length"
