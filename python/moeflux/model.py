"""``moeflux.Model``: a packed model opened on a backend, with one session (KV cache, routing trace)."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from . import _core
from .chat import Chat
from .chat_template import ChatTemplate
from .errors import FormatError, Unsupported
from .generation import Completion, Stream, resolve_options
from .tokenizer import Tokenizer
from .tool_calls import parser_for

TokenIds = Sequence[int] | np.ndarray
Prompt = str | TokenIds | Sequence[Mapping[str, Any]]


def _is_messages(prompt: Any) -> bool:
    return isinstance(prompt, (list, tuple)) and len(prompt) > 0 and all(isinstance(m, Mapping) for m in prompt)


def _int_list(ids: int | Sequence[int]) -> list[int]:
    return [int(ids)] if isinstance(ids, (int, np.integer)) else [int(i) for i in ids]


@dataclass(frozen=True)
class Routing:
    """Routing of every token since the last reset.

    experts: int32 [tokens, moe_layers, k]; weights: float32 [tokens, moe_layers, k];
    router_logits: float32 [tokens, moe_layers, n_experts], or None unless the model was opened
    with ``record_router_logits=True``.
    """

    experts: np.ndarray
    weights: np.ndarray
    router_logits: np.ndarray | None
    moe_layers: tuple[int, ...]


class Model:
    """A packed moeflux model (see ``moeflux.convert``) and one decoding session.

    backend: "cpu" or "vulkan". device: the Vulkan device, an index or part of its name (see
    ``moeflux.devices()``; None: the first discrete GPU, else the first usable device).
    threads: CPU threads (0: all cores). record_router_logits: keep raw router
    logits in ``routing``. experts_per_token: override the model's top-k (experiments; the default
    is always the model's own). cache_bytes: host memory for cached experts (None: planned from
    free host memory, MemAvailable minus the dense weights and a margin, at most every expert).
    device_cache_bytes: device memory for cached experts with backend="vulkan" (None: planned
    from free device memory; ignored by the CPU backend). A budget below one layer's top-k raises
    ``BudgetError`` naming the smallest that works. ``stats()`` shows the plan (``plan_*``).
    io: "direct" (O_DIRECT + io_uring, falling back to buffered reads where refused) or "buffered".

    >>> model = moeflux.Model("qwen3-packed")
    >>> logits = model.forward([1, 2, 3])        # float32 [3, vocab]
    >>> model.routing.experts.shape              # (3, moe_layers, k)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        backend: str = "cpu",
        threads: int = 0,
        record_router_logits: bool = False,
        experts_per_token: int | None = None,
        cache_bytes: int | None = None,
        io: str = "direct",
        device: int | str | None = None,
        device_cache_bytes: int | None = None,
    ) -> None:
        self.path = Path(path)
        self._core = _core.Model(
            os.fspath(path),
            backend=backend,
            threads=threads,
            record_router_logits=record_router_logits,
            experts_per_token=experts_per_token,
            cache_bytes=cache_bytes,
            io=io,
            device="" if device is None else str(device),
            device_cache_bytes=device_cache_bytes,
        )

    # --- the model
    @property
    def info(self) -> dict[str, Any]:
        """Shape facts: model_type, n_layers, hidden_size, vocab_size, n_experts, experts_per_token, moe_layers."""
        return self._core.info

    @cached_property
    def config(self) -> dict[str, Any]:
        """The model's config.json."""
        return json.loads((self.path / "config.json").read_text())

    @cached_property
    def generation_config(self) -> dict[str, Any]:
        path = self.path / "generation_config.json"
        return json.loads(path.read_text()) if path.exists() else {}

    @cached_property
    def tokenizer(self) -> Tokenizer | None:
        """The checkpoint's tokenizer (``moeflux.Tokenizer``; None when the model ships no tokenizer.json)."""
        return Tokenizer.from_dir(self.path)

    @cached_property
    def chat_template(self) -> ChatTemplate | None:
        """The checkpoint's chat template (None when it has none)."""
        tokenizer = self.tokenizer
        return ChatTemplate.from_dir(self.path, tokenizer.special_tokens if tokenizer else {})

    @property
    def eos_token_ids(self) -> list[int]:
        """End-of-sequence ids from generation_config.json, else config.json."""
        for source in (self.generation_config, self.config):
            eos = source.get("eos_token_id")
            if eos is not None:
                return [int(e) for e in (eos if isinstance(eos, list) else [eos])]
        return []

    @property
    def stop_token_ids(self) -> list[int]:
        """What text generation stops on: the eos ids and the chat template's end-of-turn token."""
        ids = self.eos_token_ids
        template, tokenizer = self.chat_template, self.tokenizer
        if template is not None and tokenizer is not None and template.end_of_turn:
            eot = tokenizer.token_to_id(template.end_of_turn)
            if eot is not None and eot not in ids:
                ids.append(eot)
        return ids

    # --- computing
    def forward(self, tokens: TokenIds, *, logits: str = "all") -> np.ndarray:
        """Runs ``tokens`` after everything this session has seen.

        Returns float32 logits [len(tokens), vocab] (``logits="all"``) or [1, vocab] (``"last"``).
        """
        return self._core.forward(tokens, logits=logits)

    __call__ = forward

    def reset(self) -> None:
        """Forgets the session's tokens, KV cache and routing trace."""
        self._core.reset()

    def truncate(self, n_tokens: int) -> None:
        """Forgets every position from ``n_tokens`` on (``Unsupported`` where the state cannot rewind)."""
        self._core.truncate(n_tokens)

    @property
    def n_past(self) -> int:
        """Number of tokens in the session's cache."""
        return self._core.n_past

    @property
    def tokens(self) -> np.ndarray:
        """int32 [n_past]: the tokens in the session's cache, in order."""
        return self._core.tokens

    @property
    def routing(self) -> Routing:
        """The routing of every token computed since the last reset (arrays are copies)."""
        return Routing(
            experts=self._core.experts,
            weights=self._core.weights,
            router_logits=self._core.router_logits,
            moe_layers=tuple(self.info["moe_layers"]),
        )

    # --- generation
    def generate(
        self,
        prompt: Prompt,
        max_new_tokens: int | None = None,
        *,
        do_sample: bool | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        min_p: float | None = None,
        repetition_penalty: float | None = None,
        presence_penalty: float | None = None,
        frequency_penalty: float | None = None,
        seed: int | None = None,
        eos_token_id: int | Sequence[int] | None = None,
        stop_strings: str | Sequence[str] | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
        stream: bool = False,
        stop_tokens: Sequence[int] | None = None,
        **template_kwargs: Any,
    ) -> Completion | Stream | Iterator[int]:
        """Generates a reply: a ``Completion`` (text, token_ids, tool_calls, finish_reason), or with
        ``stream=True`` a ``Stream`` of ``Chunk``s (one per token, then one with finish_reason).

        prompt: text or token ids, computed after the session's tokens; or chat messages
        (``[{"role": "user", "content": ...}]``), rendered with the model's chat template (with
        ``tools`` and ``template_kwargs`` such as ``enable_thinking=False``), where the session
        keeps the part it already holds and computes only the rest.
        Sampling arguments are transformers' ``generate``'s; those left None come from
        generation_config.json, then transformers' defaults. ``do_sample=None`` samples when you
        set temperature, top_k, top_p or min_p; ``temperature=0`` is greedy. ``seed`` restarts the
        session's generator (None: it runs on, so two calls differ). Generation stops on
        ``eos_token_id`` (default: ``stop_token_ids``), on any of ``stop_strings`` (cut from the
        text), or after ``max_new_tokens``. Tool calls (``<tool_call>{...}</tool_call>`` for Qwen)
        come back parsed; a malformed one stays in the text and is flagged.

        ``stop_tokens=`` (deprecated) keeps the old behaviour: an iterator of token ids.
        """
        options = resolve_options(
            dict(max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
                 min_p=min_p, repetition_penalty=repetition_penalty, presence_penalty=presence_penalty,
                 frequency_penalty=frequency_penalty),
            self.generation_config,
        )
        if stop_tokens is not None:  # the token-level API of earlier versions
            warnings.warn("generate(stop_tokens=...) is deprecated; use generate_tokens", DeprecationWarning, stacklevel=2)
            ids = self._require_tokenizer().encode(prompt) if isinstance(prompt, str) else prompt
            return self._core.generate(ids, seed=seed, stop_tokens=list(stop_tokens), **options)
        if _is_messages(prompt):
            text = self.apply_chat_template(prompt, tools=tools, add_generation_prompt=True, **template_kwargs)
            ids = self._require_tokenizer().encode(text)
            feed = self._reuse_prefix(ids)
        else:
            feed = self._require_tokenizer().encode(prompt) if isinstance(prompt, str) else prompt
        stops = self.stop_token_ids if eos_token_id is None else _int_list(eos_token_id)
        tokens = self._core.generate(feed, seed=seed, stop_tokens=stops, **options)
        strings = [stop_strings] if isinstance(stop_strings, str) else list(stop_strings or [])
        decoder = self.tokenizer.stream_decoder() if self.tokenizer is not None else None  # None: ids only, no text
        result = Stream(tokens, decoder, parser_for(self.info["model_type"]), strings, len(feed))
        return result if stream else result.collect()

    def generate_tokens(self, prompt: TokenIds, max_new_tokens: int | None = None, *,
                        stop_tokens: Sequence[int] | None = None, seed: int | None = None,
                        **sampling: Any) -> Iterator[int]:
        """The token-level stream: prefills ``prompt`` ids after the session's tokens and yields
        each new id; stops after one of ``stop_tokens`` (default: the eos ids). The iterator's
        ``finish_reason`` says why it ended. Sampling arguments as in ``generate``."""
        options = resolve_options(dict(sampling, max_new_tokens=max_new_tokens), self.generation_config)
        stops = self.eos_token_ids if stop_tokens is None else list(stop_tokens)
        return self._core.generate(prompt, seed=seed, stop_tokens=stops, **options)

    def chat(self, *, system: str | None = None, tools: Sequence[dict[str, Any]] | None = None,
             **template_kwargs: Any) -> Chat:
        """A conversation on this model's session (see ``moeflux.Chat``): history, tools, turns
        that compute only their new tokens."""
        return Chat(self, system=system, tools=tools, **template_kwargs)

    def _reuse_prefix(self, ids: np.ndarray) -> np.ndarray:
        """Keeps the session's tokens that begin `ids` and returns the rest (at least one token)."""
        cached = self.tokens
        n = min(len(cached), len(ids) - 1)
        if n > 0:
            differs = np.flatnonzero(cached[:n] != ids[:n])
            n = int(differs[0]) if differs.size else n
        if n < len(cached):
            try:
                self._core.truncate(n)
            except Unsupported:
                self._core.reset()
                n = 0
        return ids[n:]

    # --- text
    def tokenize(self, text: str, *, add_special_tokens: bool = False) -> np.ndarray:
        """int32 token ids of ``text`` (special tokens written in it become their ids)."""
        return self._require_tokenizer().encode(text, add_special_tokens=add_special_tokens)

    def detokenize(self, tokens: TokenIds, *, skip_special_tokens: bool = False) -> str:
        return self._require_tokenizer().decode(tokens, skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages: Sequence[dict[str, Any]], *, tools: Sequence[dict[str, Any]] | None = None,
                            add_generation_prompt: bool = True, tokenize: bool = False, **kwargs: Any) -> str | np.ndarray:
        """The prompt text of ``messages`` as transformers' ``apply_chat_template`` renders it
        (token ids with ``tokenize=True``)."""
        template = self.chat_template
        if template is None:
            raise FormatError(f"{self.path} has no chat template (tokenizer_config.json or chat_template.jinja); "
                              "pass text or token ids instead of messages")
        text = template.render(messages, tools=tools, add_generation_prompt=add_generation_prompt, **kwargs)
        return self._require_tokenizer().encode(text) if tokenize else text

    def _require_tokenizer(self) -> Tokenizer:
        if self.tokenizer is None:
            raise FormatError(f"{self.path} has no tokenizer.json; pass token ids instead of text")
        return self.tokenizer

    # --- saved state
    def save_state(self, path: str | os.PathLike[str] | None = None, *, metadata: str = "") -> bytes | None:
        """Everything the session holds (KV caches and other layer states, tokens, routing trace,
        the sampler's generator), versioned and checksummed: as bytes, or written to ``path``.
        ``metadata``: your own text stored with it (``Chat`` keeps its history there)."""
        if path is None:
            return self._core.save_state(metadata=metadata)
        self._core.save_state_file(os.fspath(path), metadata=metadata)
        return None

    def load_state(self, source: bytes | str | os.PathLike[str]) -> str:
        """Replaces the session with a saved one (``save_state``'s bytes or file) and returns its
        metadata. Raises ``ConfigError`` for a state of another model, ``FormatError`` for a
        damaged file or another version; either way the session is left as it was."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            return self._core.load_state(bytes(source))
        return self._core.load_state_file(os.fspath(source))

    # --- statistics
    def stats(self) -> dict[str, Any]:
        """Expert store counters since ``reset_stats()`` (hits, misses, hit rate, bytes read, read
        wait and throughput, evictions), the host cache (slots, bytes, io mode, dense bytes), the
        device tier with backend="vulkan" (``device_hits``, ``device_misses``, ``device_bytes_uploaded``,
        ``device_evictions``, ``device_upload_seconds``, ``device_slots``, ``device_slot_bytes``,
        ``device_cache_bytes``) and the budget plan (``plan_*``: chosen budgets, their sources
        "given" / "planned" / "all experts" / "none", and the free memory they came from)."""
        return dict(self._core.stats())

    def reset_stats(self) -> None:
        self._core.reset_stats()

    def _inject_read_errors(self, errno: int, *, count: int = 1, layer: int = -1, expert: int = -1) -> None:
        """Test hook: the next ``count`` expert reads (of ``layer``/``expert``; -1: any) fail with ``errno``."""
        self._core._inject_read_errors(errno, count=count, layer=layer, expert=expert)

    def __repr__(self) -> str:
        i = self.info
        return (
            f"moeflux.Model({str(self.path)!r}, {i['model_type']}, {i['n_layers']} layers, "
            f"{i['n_experts']} experts top-{i['experts_per_token']}, n_past={self.n_past})"
        )
