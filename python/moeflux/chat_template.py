"""A checkpoint's chat template (``chat_template`` in ``tokenizer_config.json``, or
``chat_template.jinja`` / ``chat_template.json``), rendered with jinja2 in the environment
transformers' ``apply_chat_template`` gives templates: trim_blocks and lstrip_blocks, loop
controls, ``raise_exception``, ``strftime_now``, a ``tojson`` that keeps non-ASCII text, and the
``{% generation %}`` block as plain output. The result is the same text, so the same tokens."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from .errors import ConfigError, FormatError
from .tokenizer import read_json

Message = Mapping[str, Any]


class TemplateError(ConfigError):
    """The template refused the conversation (its own raise_exception) or failed to render."""


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    raise TemplateError(f"the chat template refused the conversation: {message}")


def _strftime_now(format: str) -> str:  # noqa: A002 - the name templates call it with
    return datetime.now().strftime(format)


def _environment() -> Any:
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlock(Extension):
        """``{% generation %}...{% endgeneration %}`` marks the assistant's tokens for training
        masks; for inference it renders its body unchanged."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body, lineno=lineno)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


def _pick(template: Any, tools: Sequence[Any] | None, source: Path) -> str:
    """A template string; checkpoints with several name them, and "tool_use" serves tool calls."""
    if isinstance(template, str):
        return template
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        choice = named.get("tool_use") if tools else None
        choice = choice or named.get("default")
        if isinstance(choice, str):
            return choice
    raise FormatError(f"{source} has a chat_template moeflux cannot read (a string, or a list of named templates)")


class ChatTemplate:
    """Renders conversations into the prompt text a model was trained on.

    >>> template = ChatTemplate.from_dir("qwen3-packed")
    >>> template.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    """

    def __init__(self, template: Any, special_tokens: Mapping[str, str], source: Path) -> None:
        self.template = template
        self.special_tokens = dict(special_tokens)
        self.source = source
        self._compiled: dict[str, Any] = {}

    @classmethod
    def from_dir(cls, directory: Path, special_tokens: Mapping[str, str]) -> ChatTemplate | None:
        """The template of a checkpoint or packed model; None when it has none."""
        jinja = directory / "chat_template.jinja"
        if jinja.exists():
            return cls(jinja.read_text(encoding="utf-8"), special_tokens, jinja)
        for name in ("tokenizer_config.json", "chat_template.json"):
            template = read_json(directory / name).get("chat_template")
            if template:
                return cls(template, special_tokens, directory / name)
        return None

    def _compile(self, text: str) -> Any:
        if text not in self._compiled:
            import jinja2

            try:
                self._compiled[text] = _environment().from_string(text)
            except jinja2.TemplateSyntaxError as error:
                raise FormatError(f"the chat template in {self.source} does not parse: {error}") from None
        return self._compiled[text]

    def render(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        **kwargs: Any,
    ) -> str:
        """The prompt text of `messages` (dicts with "role" and "content", and "tool_calls" for an
        assistant's calls). tools: JSON schemas ({"type": "function", "function": {...}}) as
        transformers takes them. kwargs reach the template (e.g. enable_thinking=False)."""
        import jinja2

        if tools is not None:
            for tool in tools:
                if not isinstance(tool, Mapping):
                    raise ConfigError(f"a tool must be a JSON schema dict, not {type(tool).__name__}")
        template = self._compile(_pick(self.template, tools, self.source))
        context = dict(self.special_tokens)
        context.update(kwargs)
        try:
            return template.render(
                messages=[dict(m) for m in messages], tools=list(tools) if tools else None,
                add_generation_prompt=add_generation_prompt, **context,
            )
        except TemplateError:
            raise
        except jinja2.TemplateError as error:
            raise TemplateError(f"the chat template in {self.source} failed: {error}") from None

    @cached_property
    def end_of_turn(self) -> str | None:
        """The text the template writes right after an assistant's reply ("<|im_end|>"), found by
        rendering a reply with a marker; generation stops on it. None when nothing follows."""
        marker = "MOEFLUXENDOFTURNMARKER"
        try:
            text = self.render(
                [{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}], add_generation_prompt=False
            )
        except ConfigError:
            return None
        after = text[text.rfind(marker) + len(marker) :] if marker in text else ""
        return after.strip() or None
