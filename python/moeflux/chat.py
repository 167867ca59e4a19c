"""``moeflux.Chat``: a conversation on a model's session. It keeps the messages; each turn renders
the whole history with the chat template and the session computes only the tokens it does not
already hold. Saving writes the session state with the history inside, so a chat resumes exactly."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .errors import FormatError
from .generation import Chunk, Completion, Stream
from .tool_calls import ToolCall

if TYPE_CHECKING:
    from .model import Model

_METADATA_KIND = "moeflux.chat"


class Chat:
    """A conversation.

    >>> chat = model.chat(system="Be brief.", tools=[weather_schema])
    >>> reply = chat.send("Weather in Paris?")
    >>> for call in reply.tool_calls:
    ...     chat.add_tool_result(call, {"temperature": 18})
    >>> print(chat.send().text)        # the model answers with the tool's result
    """

    def __init__(self, model: Model, *, system: str | None = None, tools: Sequence[dict[str, Any]] | None = None,
                 **template_kwargs: Any) -> None:
        self.model = model
        self.system = system
        self.tools = list(tools) if tools else None
        self.template_kwargs = template_kwargs
        self.messages: list[dict[str, Any]] = []
        self.reset()

    def reset(self) -> None:
        """Forgets the conversation (the system message stays) and the session's tokens."""
        self.messages = [{"role": "system", "content": self.system}] if self.system else []
        self.model.reset()

    def send(self, content: str | None = None, *, stream: bool = False, **generate_kwargs: Any) -> Completion | Stream:
        """Adds a user message (none: answer what is there, e.g. after tool results) and generates
        the reply, which joins the history. With ``stream=True``, a ``Stream`` of ``Chunk``s; the
        reply joins the history when the stream is exhausted."""
        if content is not None:
            self.messages.append({"role": "user", "content": content})
        result = self.model.generate(self.messages, tools=self.tools, stream=True, **self.template_kwargs,
                                     **generate_kwargs)
        assert isinstance(result, Stream)
        if not stream:
            completion = result.collect()
            self.messages.append(completion.to_message())
            return completion
        return _Recorded(result, self.messages)

    def add_tool_result(self, call: ToolCall, result: Any) -> None:
        """The output of a tool the model called (text, or anything JSON can write)."""
        content = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
        self.messages.append({"role": "tool", "name": call.name, "tool_call_id": call.id, "content": content})

    def save(self, path: str | os.PathLike[str]) -> None:
        """The session state with the history, system prompt and tools inside (one file)."""
        metadata = {"kind": _METADATA_KIND, "messages": self.messages, "system": self.system, "tools": self.tools,
                    "template_kwargs": self.template_kwargs}
        self.model.save_state(path, metadata=json.dumps(metadata, ensure_ascii=False))

    def load(self, path: str | os.PathLike[str]) -> None:
        """Resumes a chat saved by ``save`` (FormatError for a state without a chat in it)."""
        metadata = self.model.load_state(path)
        try:
            saved = json.loads(metadata) if metadata else {}
        except ValueError:
            saved = {}
        if saved.get("kind") != _METADATA_KIND:
            raise FormatError(f"{os.fspath(path)} holds a model state but no chat; save it with Chat.save")
        self.messages = saved["messages"]
        self.system, self.tools = saved.get("system"), saved.get("tools")
        self.template_kwargs = saved.get("template_kwargs") or {}


class _Recorded(Stream):
    """A stream whose reply joins the chat's history once it ends."""

    def __init__(self, inner: Stream, messages: list[dict[str, Any]]) -> None:  # noqa: super().__init__ not needed
        self._inner = inner
        self._messages = messages
        self.completion = None

    def __next__(self) -> Chunk:
        chunk = next(self._inner)
        if chunk.finish_reason is not None:
            self.completion = self._inner.completion
            assert self.completion is not None
            self._messages.append(self.completion.to_message())
        return chunk

    def __iter__(self) -> Iterator[Chunk]:  # type: ignore[override]
        return self
