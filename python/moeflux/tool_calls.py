"""Tool calls in generated text, parsed while it streams.

A parser takes text as it arrives and returns events: plain text, finished tool calls, and
malformed calls handed back as text with a flag (never an exception in the middle of a stream).
Families differ only in how a call is written; ``TaggedJsonParser`` covers the Qwen style,
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``. Another family's format is a class
with ``feed`` and ``finish`` registered in ``PARSERS`` under its config.json model_type.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ToolCall:
    """One call: the tool's name and its arguments (parsed JSON, usually a dict); `raw` is the
    text the model wrote for it; `id` numbers calls within a generation ("call_0", ...)."""

    name: str
    arguments: Any
    raw: str = ""
    id: str = ""

    def to_message(self) -> dict[str, Any]:
        """The call as chat templates expect it in an assistant message's "tool_calls"."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass
class ParseEvents:
    """What one feed() produced: text to show, finished calls, and malformed call text (also in
    `text`, so nothing the model wrote is lost)."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)

    def extend(self, other: ParseEvents) -> None:
        self.text += other.text
        self.tool_calls.extend(other.tool_calls)
        self.malformed.extend(other.malformed)


class ToolCallParser(Protocol):
    def feed(self, text: str) -> ParseEvents: ...

    def finish(self) -> ParseEvents: ...


def _held_prefix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that begins `tag` (it may become the tag)."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


class TaggedJsonParser:
    """Calls written as ``<open>{"name": ..., "arguments": ...}<close>`` (Qwen, Hermes)."""

    def __init__(self, open_tag: str = "<tool_call>", close_tag: str = "</tool_call>") -> None:
        self.open_tag, self.close_tag = open_tag, close_tag
        self._buffer = ""
        self._inside = False
        self._count = 0

    def _call(self, body: str) -> ToolCall | None:
        try:
            value = json.loads(body)
        except ValueError:
            return None
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            return None
        arguments = value.get("arguments", value.get("parameters", {}))
        if isinstance(arguments, str):  # some models write the arguments as a JSON string
            try:
                arguments = json.loads(arguments)
            except ValueError:
                return None
        call = ToolCall(value["name"], arguments, raw=self.open_tag + body + self.close_tag, id=f"call_{self._count}")
        self._count += 1
        return call

    def feed(self, text: str) -> ParseEvents:
        events = ParseEvents()
        self._buffer += text
        while True:
            if not self._inside:
                start = self._buffer.find(self.open_tag)
                if start < 0:
                    keep = _held_prefix(self._buffer, self.open_tag)
                    events.text += self._buffer[: len(self._buffer) - keep]
                    self._buffer = self._buffer[len(self._buffer) - keep :]
                    return events
                events.text += self._buffer[:start]
                self._buffer = self._buffer[start + len(self.open_tag) :]
                self._inside = True
            end = self._buffer.find(self.close_tag)
            if end < 0:
                return events
            body = self._buffer[:end]
            self._buffer = self._buffer[end + len(self.close_tag) :]
            self._inside = False
            call = self._call(body.strip())
            if call is None:
                raw = self.open_tag + body + self.close_tag
                events.text += raw
                events.malformed.append(raw)
            else:
                events.tool_calls.append(call)

    def finish(self) -> ParseEvents:
        """The end of the text: an unclosed call is malformed, returned as text."""
        events = ParseEvents()
        if self._inside:
            raw = self.open_tag + self._buffer
            events.text, events.malformed = raw, [raw]
        else:
            events.text = self._buffer
        self._buffer, self._inside = "", False
        return events


# config.json model_type -> a parser factory; families not listed use the Qwen style.
PARSERS: dict[str, Callable[[], ToolCallParser]] = {
    "qwen3_moe": TaggedJsonParser,
    "qwen2_moe": TaggedJsonParser,
    "qwen3_next": TaggedJsonParser,
}


def parser_for(model_type: str) -> ToolCallParser:
    return PARSERS.get(model_type, TaggedJsonParser)()


def parse_tool_calls(text: str, model_type: str = "qwen3_moe") -> ParseEvents:
    """Every call in a finished text, and the text around them."""
    parser = parser_for(model_type)
    events = parser.feed(text)
    events.extend(parser.finish())
    return events
