"""Decode throughput of a packed model under several expert-cache budgets: tok/s, hit rate, bytes
read per token, the store's read throughput, and resident memory against dense + budget.

    python benchmarks/bench_decode.py MODEL --budgets all,0.5,0.25,min --tokens 32 [--cold]

Each budget runs in a fresh process-level Model; with --cold the page cache is dropped first
(needs root). Prints one JSON object per budget, then a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import moeflux


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def drop_page_cache() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def expert_bytes(model_dir: Path) -> tuple[int, int]:
    """(stride of the largest record, bytes of every expert record)."""
    manifest = json.loads((model_dir / "moeflux.json").read_text())
    layers = manifest["experts"]["layers"]
    return max(l["stride"] for l in layers), sum(l["stride"] * l["n_experts"] for l in layers)


def budget_bytes(spec: str, stride: int, total: int, k: int) -> int | None:
    if spec == "all":
        return None
    if spec == "min":
        return k * stride
    return max(int(float(spec) * total) // stride * stride, k * stride)


def run_one(path: Path, spec: str, args: argparse.Namespace) -> dict:
    stride, total = expert_bytes(path)
    cold = drop_page_cache() if args.cold else False
    probe_k = json.loads((path / "config.json").read_text())["num_experts_per_tok"]
    k = args.experts_per_token or probe_k
    cache = budget_bytes(spec, stride, total, k)
    if args.profile:  # GPU timestamps per shader (read when the backend is created)
        os.environ["MOEFLUX_VULKAN_PROFILE"] = "1"
    t0 = time.perf_counter()
    model = moeflux.Model(path, backend=args.backend, cache_bytes=cache, io=args.io, threads=args.threads,
                          experts_per_token=args.experts_per_token,
                          device_cache_bytes=budget_bytes(args.device_budget, stride, total, k) if args.backend == "vulkan" else None)
    open_s = time.perf_counter() - t0
    vocab = model.info["vocab_size"]
    prompt = np.random.default_rng(0).integers(0, vocab, size=args.prompt, dtype=np.int32)

    t0 = time.perf_counter()
    model.forward(prompt, logits="last")
    prefill_s = time.perf_counter() - t0
    warm = np.random.default_rng(2).integers(0, vocab, size=args.warmup, dtype=np.int32)
    for t in warm:  # untimed steps that fill the caches
        model.forward([int(t)], logits="last")
    model.reset_stats()
    # Random weights make greedy decoding repeat itself, and a repeated token repeats its experts:
    # feeding random tokens instead gives every step fresh (uniform) routing, the cache's worst case.
    feed = np.random.default_rng(1).integers(0, vocab, size=args.tokens, dtype=np.int32)
    token = [int(prompt[-1])]
    t0 = time.perf_counter()
    for i in range(args.tokens):
        logits = model.forward(token, logits="last")
        token = [int(feed[i]) if args.feed == "random" else int(np.argmax(logits[0]))]
    decode_s = time.perf_counter() - t0
    s = model.stats()
    # The prompt again with warm caches and compiled kernels: prefill throughput as a server sees it.
    model.reset()
    model.reset_stats()
    t0 = time.perf_counter()
    model.forward(prompt, logits="last")
    prefill_warm_s = time.perf_counter() - t0
    prefill_gpu = {k.split(".", 1)[1]: v for k, v in model.stats().items() if k.startswith("gpu_seconds.")}
    n = args.tokens
    device = {k: v for k, v in s.items() if k.startswith("device_")}
    n_layers = json.loads((path / "config.json").read_text())["num_hidden_layers"]
    # Per token: the recorder's counts and host times; with --profile, GPU time per shader (ms per
    # token, and microseconds per layer).
    recorder = {k + "_per_token": round(v / args.tokens, 5) for k, v in s.items() if k.startswith("vk_")}
    gpu = {k.split(".", 1)[1]: v / args.tokens for k, v in s.items() if k.startswith("gpu_seconds.")}
    if gpu:
        recorder["gpu_ms_per_token"] = {k: round(1e3 * v, 4) for k, v in sorted(gpu.items(), key=lambda kv: -kv[1])}
        recorder["gpu_ms_per_token_total"] = round(1e3 * sum(gpu.values()), 3)
        # The GPU waiting for the host between batches (recording, the step from logits to the next
        # token), per token.
        recorder["gpu_idle_ms_per_token"] = round(1e3 * s.get("gpu_idle_seconds", 0.0) / args.tokens, 4)
        recorder["gpu_idle_after_wait_ms_per_token"] = round(1e3 * s.get("gpu_idle_after_wait_seconds", 0.0) / args.tokens, 4)
        recorder["gpu_us_per_layer"] = {k: round(1e6 * v / n_layers, 2) for k, v in sorted(gpu.items(), key=lambda kv: -kv[1])}
        commands = {k.split(".", 1)[1]: v for k, v in s.items() if k.startswith("gpu_commands.")}
        recorder["gpu_us_per_command"] = {k: round(1e6 * v * args.tokens / commands[k], 2)
                                          for k, v in sorted(gpu.items(), key=lambda kv: -kv[1]) if commands.get(k)}
        recorder["gpu_commands_per_token"] = {k: round(v / args.tokens, 2) for k, v in sorted(commands.items())}
    if prefill_gpu:  # the warm prompt's GPU time per shader, per layer
        recorder["prefill_gpu_us_per_layer"] = {k: round(1e6 * v / n_layers, 1)
                                                for k, v in sorted(prefill_gpu.items(), key=lambda kv: -kv[1])}
    return dict(
        budget=spec,
        backend=args.backend,
        device_budget=args.device_budget if args.backend == "vulkan" else None,
        feed=args.feed,
        warmup=args.warmup,
        tokens=args.tokens,
        cache_bytes=s["cache_bytes"],
        dense_bytes=s["dense_bytes"],
        cold=cold,
        io=s["io"],
        open_s=round(open_s, 3),
        prefill_tokens=args.prompt,
        prefill_tok_s=round(args.prompt / prefill_s, 2),
        prefill_warm_tok_s=round(args.prompt / prefill_warm_s, 2),
        decode_tok_s=round(n / decode_s, 3),
        ms_per_token=round(1e3 * decode_s / n, 2),
        # A slice of a deeper model (synthetic_model.py --layers): a layer's share of a token, the
        # embedding and LM head included (so an upper bound of a layer's own time).
        layers=n_layers,
        ms_per_layer=round(1e3 * decode_s / n / n_layers, 3),
        hit_rate=round(s["expert_hit_rate"], 4),
        bytes_read_per_token=int(s["expert_bytes_read"] / n),
        read_wait_s_per_token=round(s["read_wait_seconds"] / n, 5),
        read_throughput_GBs=round(s["read_throughput"] / 1e9, 3),
        rss_bytes=rss_bytes(),
        rss_over_dense_plus_budget=round(rss_bytes() / (s["dense_bytes"] + s["cache_bytes"]), 3),
        **device,
        **recorder,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--budgets", default="all,0.5,0.25,min", help="comma list: all, min, or a fraction of all experts")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=0, help="untimed decode steps before measuring")
    parser.add_argument("--io", default="direct", choices=["direct", "buffered"])
    parser.add_argument("--backend", default="cpu", choices=["cpu", "vulkan"])
    parser.add_argument("--device-budget", default="all", help="vulkan: device expert cache (all, min, or a fraction)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--experts-per-token", type=int, default=None)
    parser.add_argument("--feed", default="random", choices=["random", "greedy"],
                        help="next input token: random (fresh routing every step) or the greedy choice")
    parser.add_argument("--profile", action="store_true", help="vulkan: GPU time per shader (timestamps; slows decode)")
    parser.add_argument("--cold", action="store_true", help="drop the page cache before each budget (root)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one budget, print JSON
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.model, args.one, args)))
        return
    rows = []
    for spec in args.budgets.split(","):
        # A process per budget, so the resident memory of one run does not count against the next.
        rest, skip = [], False
        for a in sys.argv[2:]:  # everything but the budget list
            if skip or a.startswith("--budgets="):
                skip = False
                continue
            if a == "--budgets":
                skip = True
                continue
            rest.append(a)
        cmd = [sys.executable, __file__, str(args.model), "--one", spec] + rest
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        rows.append(json.loads(out))
        print(out, flush=True)
    cols = ["budget", "cache_bytes", "io", "decode_tok_s", "ms_per_token", "hit_rate", "bytes_read_per_token",
            "read_throughput_GBs", "prefill_tok_s", "prefill_warm_tok_s", "rss_over_dense_plus_budget"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
