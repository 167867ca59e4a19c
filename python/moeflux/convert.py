"""``moeflux.convert``: a Hugging Face (or MLX-quantized) checkpoint directory -> a packed moeflux model
directory, optionally quantized."""

from __future__ import annotations

import os
from typing import Any

from tqdm.auto import tqdm

from . import _core
from .checksums import write_checksums


def convert(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    dtype: str | None = None,
    expert_bits: int | None = None,
    dense_bits: int | None = None,
    group_size: int = 64,
    scale_dtype: str = "bf16",
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Converts the checkpoint in ``src`` (config.json, *.safetensors) into ``dst``.

    dtype: "f32", "f16" or "bf16" to store every float tensor in that type; None keeps the source types.
    expert_bits: 8, 4, 3 or 2 to quantize every routed expert; None keeps them as they are (an
        MLX-quantized checkpoint stays quantized, bit for bit).
    dense_bits: the same for the dense projections, embeddings and LM head (never norms or routers).
    group_size: 32, 64 or 128 elements per scale and bias; scale_dtype: "bf16" or "f16".
    Returns {"bytes_written": int, "ignored": [source tensors no part of the model uses]}.
    Writes checksums.json last (``moeflux verify`` checks it).
    Raises ConfigError for unsupported options, naming the option or the tensor.
    """
    bar: tqdm | None = None  # made on the first report, so a bad input prints only its error

    def report(done: int, total: int, current: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="B", unit_scale=True, desc="convert")
        bar.set_postfix_str(current[-40:], refresh=False)
        bar.update(done - bar.n)

    try:
        report = dict(
            _core.convert(
                os.fspath(src),
                os.fspath(dst),
                dtype=dtype,
                expert_bits=expert_bits,
                dense_bits=dense_bits,
                group_size=group_size,
                scale_dtype=scale_dtype,
                overwrite=overwrite,
                progress=report if progress else None,
            )
        )
    finally:
        if bar is not None:
            bar.close()
    write_checksums(dst, progress=progress)
    return report
