"""The checkpoint's own tokenizer (``tokenizer.json`` through Hugging Face ``tokenizers``), its
special tokens from ``tokenizer_config.json``, and streaming detokenization that never splits a
UTF-8 character or a merge that only reads right once the next token has arrived."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FormatError

_SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")


def _token_text(value: Any) -> str | None:
    """tokenizer_config.json writes special tokens as strings or as {"content": ...} objects."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, {} when absent; FormatError naming the file when malformed."""
    if not path.exists():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise FormatError(f"{path} is not valid JSON ({error}); copy it again from the checkpoint") from None
    if not isinstance(value, dict):
        raise FormatError(f"{path} holds no JSON object; copy it again from the checkpoint")
    return value


class Tokenizer:
    """``tokenizer.json`` with the special tokens of ``tokenizer_config.json``.

    >>> tok = Tokenizer.from_dir("qwen3-packed")
    >>> tok.encode("Hello")            # int32 ids, no special tokens added
    >>> tok.decode([9707])
    """

    def __init__(self, tokenizer: Any, config: dict[str, Any]) -> None:
        self.backend = tokenizer  # the tokenizers.Tokenizer
        self.config = config
        self.special_tokens: dict[str, str] = {
            key: text for key in _SPECIAL_KEYS if (text := _token_text(config.get(key))) is not None
        }

    @classmethod
    def from_dir(cls, directory: str | os.PathLike[str]) -> Tokenizer | None:
        """The tokenizer of a checkpoint or packed model directory; None without tokenizer.json."""
        root = Path(directory)
        path = root / "tokenizer.json"
        if not path.exists():
            return None
        from tokenizers import Tokenizer as HfTokenizer

        try:
            backend = HfTokenizer.from_file(os.fspath(path))
        except Exception as error:  # tokenizers raises a bare Exception for malformed files
            raise FormatError(f"{path} cannot be read by tokenizers ({error}); copy it again from the checkpoint") from None
        config = read_json(root / "special_tokens_map.json")
        config.update(read_json(root / "tokenizer_config.json"))
        return cls(backend, config)

    @property
    def vocab_size(self) -> int:
        return int(self.backend.get_vocab_size(with_added_tokens=True))

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self.backend.id_to_token(int(token_id))

    def special_id(self, key: str) -> int | None:
        """The id of a special token named in the config ("eos_token", "bos_token", ...)."""
        text = self.special_tokens.get(key)
        return None if text is None else self.token_to_id(text)

    @property
    def all_special_ids(self) -> set[int]:
        """Ids of every added token marked special (the ones skip_special_tokens drops)."""
        decoder = self.backend.get_added_tokens_decoder()
        return {int(i) for i, token in decoder.items() if token.special}

    def encode(self, text: str, *, add_special_tokens: bool = False) -> np.ndarray:
        """int32 ids of `text`. Special tokens written in the text ("<|im_start|>") become their ids;
        add_special_tokens adds what the tokenizer's post-processor adds (a BOS, for some models)."""
        return np.asarray(self.backend.encode(text, add_special_tokens=add_special_tokens).ids, dtype=np.int32)

    def decode(self, ids: Sequence[int] | np.ndarray, *, skip_special_tokens: bool = False) -> str:
        return self.backend.decode([int(t) for t in ids], skip_special_tokens=skip_special_tokens)

    def stream_decoder(self, *, skip_special_tokens: bool = True) -> StreamDecoder:
        return StreamDecoder(self, skip_special_tokens=skip_special_tokens)


class StreamDecoder:
    """Text of a growing token sequence, piece by piece.

    Decoding token by token breaks characters that span tokens (byte-level BPE splits one emoji
    over several) and loses the spaces some decoders add between tokens. So each step decodes a
    short window of recent tokens, holds back text that ends in an incomplete character (U+FFFD),
    and returns only what is new; the pieces concatenate to ``decode(all ids)``.
    """

    def __init__(self, tokenizer: Tokenizer, *, skip_special_tokens: bool = True) -> None:
        self._tokenizer = tokenizer
        self._skip = skip_special_tokens
        self._ids: list[int] = []
        self._start = 0  # first id of the window, decoded for context only
        self._emitted = 0  # first id whose text has not been returned yet

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=self._skip)

    def add(self, token_id: int) -> str:
        """The new text that ``token_id`` completes ("" while a character is unfinished)."""
        self._ids.append(int(token_id))
        before = self._decode(self._ids[self._start : self._emitted])
        now = self._decode(self._ids[self._start :])
        if now.endswith("\ufffd") or len(now) < len(before) or not now.startswith(before):
            return ""  # an unfinished character, or a merge not yet settled: wait for more tokens
        self._start, self._emitted = self._emitted, len(self._ids)
        return now[len(before) :]

    def flush(self) -> str:
        """Whatever is held back, as it decodes now (the end of a generation)."""
        before = self._decode(self._ids[self._start : self._emitted])
        now = self._decode(self._ids[self._start :])
        self._start = self._emitted = len(self._ids)
        return now[len(before) :] if now.startswith(before) else now
