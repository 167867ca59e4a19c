"""Tool calls in generated text, parsed while it streams.

A parser takes text as it arrives and returns events: plain text, finished tool calls, and
malformed calls handed back as text with a flag (never an exception in the middle of a stream).
Families differ only in how a call is written; ``TaggedCallParser`` covers the Qwen families:
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (Qwen2/3, Hermes) and the XML body
``<tool_call><function=NAME><parameter=P>value</parameter>...</function></tool_call>`` of the
Qwen3.5 and Qwen3-Coder templates. Another family's format is a class with ``feed`` and
``finish`` registered in ``PARSERS`` under its config.json model_type.
"""

from __future__ import annotations

import json
import re
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


_FUNCTION = re.compile(r"<function=([^>\n]+)>(.*)</function>", re.S)
_PARAMETER = re.compile(r"<parameter=([^>\n]+)>(.*?)</parameter>", re.S)


def _json_body(body: str) -> tuple[str, Any] | None:
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
    return value["name"], arguments


def _parameter_value(text: str) -> Any:
    """A parameter's text, one newline trimmed at each end (as the templates write it): JSON where
    it parses as JSON (numbers, booleans, objects, lists), else the text itself."""
    text = text[1:] if text.startswith("\n") else text
    text = text[:-1] if text.endswith("\n") else text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _xml_body(body: str) -> tuple[str, Any] | None:
    match = _FUNCTION.fullmatch(body)
    if match is None or not match.group(1).strip():
        return None
    arguments: dict[str, Any] = {}
    rest = match.group(2)
    end = 0
    for parameter in _PARAMETER.finditer(rest):
        if rest[end : parameter.start()].strip():  # text between parameters: not this format
            return None
        arguments[parameter.group(1).strip()] = _parameter_value(parameter.group(2))
        end = parameter.end()
    if rest[end:].strip():
        return None
    return match.group(1).strip(), arguments


class TaggedCallParser:
    """Calls between ``<open>`` and ``<close>`` tags, their body JSON (``{"name": ..., "arguments":
    ...}``) or XML (``<function=NAME><parameter=P>value</parameter>...</function>``)."""

    def __init__(self, open_tag: str = "<tool_call>", close_tag: str = "</tool_call>") -> None:
        self.open_tag, self.close_tag = open_tag, close_tag
        self._buffer = ""
        self._inside = False
        self._count = 0

    def _call(self, body: str) -> ToolCall | None:
        parsed = _json_body(body) if body.startswith("{") else _xml_body(body)
        if parsed is None:
            return None
        call = ToolCall(parsed[0], parsed[1], raw=self.open_tag + body + self.close_tag, id=f"call_{self._count}")
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
    "qwen3_moe": TaggedCallParser,
    "qwen2_moe": TaggedCallParser,
    "qwen3_next": TaggedCallParser,
    "qwen3_5_moe": TaggedCallParser,
    "qwen3_5_moe_text": TaggedCallParser,
}


def parser_for(model_type: str) -> ToolCallParser:
    return PARSERS.get(model_type, TaggedCallParser)()


def parse_tool_calls(text: str, model_type: str = "qwen3_moe") -> ParseEvents:
    """Every call in a finished text, and the text around them."""
    parser = parser_for(model_type)
    events = parser.feed(text)
    events.extend(parser.finish())
    return events
