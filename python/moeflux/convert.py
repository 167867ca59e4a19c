"""``moeflux.convert``: a Hugging Face checkpoint directory -> a packed moeflux model directory."""

from __future__ import annotations

import os
from typing import Any

from tqdm.auto import tqdm

from . import _core


def convert(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    dtype: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Converts the checkpoint in ``src`` (config.json, *.safetensors) into ``dst``.

    dtype: "f32", "f16" or "bf16" to store every tensor in that type; None keeps the source types.
    Returns {"bytes_written": int, "ignored": [source tensors no part of the model uses]}.
    """
    bar: tqdm | None = None  # made on the first report, so a bad input prints only its error

    def report(done: int, total: int, current: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="B", unit_scale=True, desc="convert")
        bar.set_postfix_str(current[-40:], refresh=False)
        bar.update(done - bar.n)

    try:
        return dict(
            _core.convert(
                os.fspath(src), os.fspath(dst), dtype=dtype, overwrite=overwrite, progress=report if progress else None
            )
        )
    finally:
        if bar is not None:
            bar.close()
