"""``moeflux.Model``: a packed model opened on a backend, with one session (KV cache, routing trace)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from . import _core

TokenIds = Sequence[int] | np.ndarray


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
    def tokenizer(self) -> Any:
        """The checkpoint's ``tokenizers.Tokenizer`` (None when the model ships no tokenizer.json)."""
        path = self.path / "tokenizer.json"
        if not path.exists():
            return None
        from tokenizers import Tokenizer

        return Tokenizer.from_file(os.fspath(path))

    @property
    def eos_token_ids(self) -> list[int]:
        """End-of-sequence ids from generation_config.json, else config.json."""
        for source in (self.generation_config, self.config):
            eos = source.get("eos_token_id")
            if eos is not None:
                return [int(e) for e in (eos if isinstance(eos, list) else [eos])]
        return []

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

    def generate(
        self,
        prompt: TokenIds | str,
        max_new_tokens: int = 32,
        *,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = 0,
        stop_tokens: Sequence[int] | None = None,
    ) -> Iterator[int]:
        """Streams new token ids: prefills ``prompt`` (ids, or text when the model has a tokenizer)
        after the session's tokens, then samples up to ``max_new_tokens``; greedy when
        ``temperature`` is 0. Stops after yielding one of ``stop_tokens`` (default: the model's eos).
        """
        ids = self.tokenize(prompt) if isinstance(prompt, str) else prompt
        stops = self.eos_token_ids if stop_tokens is None else list(stop_tokens)
        return self._core.generate(
            ids,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            stop_tokens=stops,
        )

    # --- text
    def tokenize(self, text: str) -> np.ndarray:
        """int32 token ids of ``text`` (no special tokens added)."""
        tokenizer = self._require_tokenizer()
        return np.asarray(tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int32)

    def detokenize(self, tokens: TokenIds) -> str:
        return self._require_tokenizer().decode([int(t) for t in tokens], skip_special_tokens=False)

    def _require_tokenizer(self) -> Any:
        if self.tokenizer is None:
            from .errors import FormatError

            raise FormatError(f"{self.path} has no tokenizer.json; pass token ids instead of text")
        return self.tokenizer

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
