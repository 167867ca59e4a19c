"""``moeflux demo``: makes (once) the built-in default model, a small random-weight Qwen3-MoE with
its own tokenizer, then streams a generation and prints speed and a routing summary."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .convert import convert
from .default_model import write_default_checkpoint
from .model import Model


def default_home() -> Path:
    home = os.environ.get("MOEFLUX_HOME")
    if home:
        return Path(home)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "moeflux"


def default_model_path(home: str | os.PathLike[str] | None = None) -> Path:
    """The packed default model, written and converted on first use."""
    root = Path(home) if home else default_home()
    packed = root / "default-model"
    if not (packed / "moeflux.json").exists():
        print(f"moeflux: writing the built-in default model to {packed} (once)")
        source = write_default_checkpoint(root / "default-model-hf")
        convert(source, packed, overwrite=True, progress=False)
    return packed


def routing_summary(experts: np.ndarray, moe_layers: tuple[int, ...], n_experts: int) -> list[str]:
    """One line per MoE layer: distinct experts used, the busiest experts, load balance."""
    lines = []
    for j, layer in enumerate(moe_layers):
        counts = np.bincount(experts[:, j, :].ravel(), minlength=n_experts)
        share = counts / counts.sum()
        nonzero = share[share > 0]
        entropy = float(-(nonzero * np.log(nonzero)).sum() / np.log(n_experts))
        top = np.argsort(-counts, kind="stable")[:3]
        busiest = ", ".join(f"{e}:{counts[e]}" for e in top)
        lines.append(f"  layer {layer:3d}: {np.count_nonzero(counts):3d}/{n_experts} experts used, busiest {busiest}, balance {entropy:.2f}")
    return lines


def run_demo(prompt: str, max_new_tokens: int = 48, home: str | None = None, threads: int = 0) -> None:
    model = Model(default_model_path(home), threads=threads)
    info = model.info
    print(f"model: {info['model_type']}, {info['n_layers']} layers, {info['n_experts']} experts, top-{info['experts_per_token']} (random weights)")
    ids = model.tokenize(prompt)
    print(prompt, end="", flush=True)

    generated: list[int] = []
    start = time.perf_counter()
    first_token_at = None
    for chunk in model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, stream=True):
        if first_token_at is None:
            first_token_at = time.perf_counter()
        generated.extend(chunk.token_ids)
        print(chunk.text, end="", flush=True)
    end = time.perf_counter()
    print()

    prefill_s = (first_token_at or end) - start
    decode_n = max(len(generated) - 1, 0)
    decode_s = end - (first_token_at or end)
    print(f"prefill: {len(ids)} tokens in {prefill_s * 1e3:.1f} ms ({len(ids) / max(prefill_s, 1e-9):.0f} tok/s)")
    if decode_n:
        print(f"decode: {decode_n} tokens in {decode_s * 1e3:.1f} ms ({decode_n / max(decode_s, 1e-9):.1f} tok/s)")
    routing = model.routing
    print(f"routing of {routing.experts.shape[0]} tokens (experts array {routing.experts.shape}):")
    for line in routing_summary(routing.experts, routing.moe_layers, info["n_experts"]):
        print(line)
