"""What generation returns, and the streaming pipeline behind it.

Tokens from the engine become text (``StreamDecoder``), text is cut at stop strings (held back
while it could still become one), and the rest goes through the family's tool-call parser. A
stream yields one ``Chunk`` per generated token and a last chunk with ``finish_reason``;
``Completion`` is the whole result.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .tokenizer import StreamDecoder
from .tool_calls import ToolCall, ToolCallParser

SAMPLING_KEYS = ("temperature", "top_k", "top_p", "min_p")
# transformers' GenerationConfig defaults, used where generation_config.json says nothing.
DEFAULTS: dict[str, Any] = {
    "max_new_tokens": 256,
    "do_sample": False,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "min_p": 0.0,
    "repetition_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
}


@dataclass
class Chunk:
    """One step of a stream.

    text: new text (tool calls excluded; a malformed call is included, flagged by
    ``malformed_tool_call``). token_ids: the tokens this step generated (one, or none on the last
    chunk). tool_calls: calls completed by this step. finish_reason: None until the last chunk,
    then "stop" (an end-of-turn/eos token or a stop string), "length" (max_new_tokens) or
    "tool_calls" (the reply ended having made calls).
    """

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    malformed_tool_call: bool = False


@dataclass
class Completion:
    """A finished generation: the text (without tool calls and the stop string), every generated
    token id, the tool calls, malformed call texts (kept in ``text`` too), why it ended, and the
    number of prompt tokens computed for it (fewer than the prompt where a session's prefix was reused)."""

    text: str
    token_ids: list[int]
    tool_calls: list[ToolCall]
    finish_reason: str
    malformed_tool_calls: list[str] = field(default_factory=list)
    prompt_tokens_computed: int = 0

    def to_message(self) -> dict[str, Any]:
        """The reply as an assistant message for the next turn's history."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text}
        if self.tool_calls:
            message["tool_calls"] = [call.to_message() for call in self.tool_calls]
        return message


def resolve_options(given: dict[str, Any], generation_config: dict[str, Any]) -> dict[str, Any]:
    """Sampling options: what the caller gave, else generation_config.json, else transformers'
    defaults. do_sample left as None means "sample" when the caller set a sampling option and
    generation_config.json's do_sample otherwise; temperature 0 means greedy."""
    options = {}
    for key, default in DEFAULTS.items():
        value = given.get(key)
        if value is None:
            value = generation_config.get(key)
        options[key] = default if value is None else value
    if given.get("do_sample") is None and any(given.get(k) is not None for k in SAMPLING_KEYS):
        options["do_sample"] = True
    if options["temperature"] == 0:
        options["do_sample"], options["temperature"] = False, 1.0
    options["top_k"] = int(options["top_k"] or 0)
    options["min_p"] = float(options["min_p"] or 0.0)
    return options


def _stop_hold(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of `text` that begins some stop string."""
    hold = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), hold, -1):
            if stop.startswith(text[-n:]):
                hold = n
                break
    return hold


class Stream:
    """An iterator of ``Chunk``; ``completion`` holds the whole result once it is exhausted
    (``collect()`` runs it to the end and returns it)."""

    def __init__(self, tokens: Iterator[int], decoder: StreamDecoder | None, parser: ToolCallParser,
                 stop_strings: Sequence[str], prompt_tokens_computed: int) -> None:
        self._tokens = tokens
        self._decoder = decoder
        self._parser = parser
        self._stops = [s for s in stop_strings if s]
        self._pending = ""  # decoded text not yet cleared of stop strings
        self._chunks = self._run()
        self._text: list[str] = []
        self._ids: list[int] = []
        self._calls: list[ToolCall] = []
        self._malformed: list[str] = []
        self._prompt_tokens = prompt_tokens_computed
        self.completion: Completion | None = None

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> Chunk:
        return next(self._chunks)

    def collect(self) -> Completion:
        for _ in self:
            pass
        assert self.completion is not None
        return self.completion

    def _emit(self, text: str, ids: list[int], final: bool) -> Chunk:
        events = self._parser.feed(text)
        if final:
            events.extend(self._parser.finish())
        self._text.append(events.text)
        self._ids.extend(ids)
        self._calls.extend(events.tool_calls)
        self._malformed.extend(events.malformed)
        return Chunk(events.text, ids, events.tool_calls, None, bool(events.malformed))

    def _run(self) -> Iterator[Chunk]:
        finish = None
        for token in self._tokens:
            self._pending += self._decoder.add(token) if self._decoder else ""
            cut = min((i for s in self._stops if (i := self._pending.find(s)) >= 0), default=-1)
            if cut >= 0:
                self._pending = self._pending[:cut]
                finish = "stop"
                yield self._emit("", [int(token)], final=False)
                break
            hold = _stop_hold(self._pending, self._stops)
            ready, self._pending = self._pending[: len(self._pending) - hold], self._pending[len(self._pending) - hold :]
            yield self._emit(ready, [int(token)], final=False)
        if finish is None:
            self._pending += self._decoder.flush() if self._decoder else ""
            finish = getattr(self._tokens, "finish_reason", "") or "length"
        last = self._emit(self._pending, [], final=True)
        self._pending = ""
        if self._calls and finish == "stop":
            finish = "tool_calls"
        last.finish_reason = finish
        self.completion = Completion("".join(self._text), self._ids, self._calls, finish, self._malformed,
                                     self._prompt_tokens)
        yield last
