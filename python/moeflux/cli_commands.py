"""The ``moeflux`` commands that run a model: generate, bench, verify, devices (cli.py parses the
arguments; chat lives in cli_chat.py)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from .errors import ConfigError


def open_model(args: argparse.Namespace) -> Any:
    from .model import Model

    return Model(args.model, backend=args.backend, device=args.device, threads=args.threads,
                 cache_bytes=args.cache_bytes, device_cache_bytes=args.device_cache_bytes)


def sampling_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """generate()'s arguments from the sampling options; those not given stay None (the model's
    generation_config.json decides)."""
    keys = ("max_new_tokens", "temperature", "top_k", "top_p", "min_p", "repetition_penalty", "presence_penalty",
            "frequency_penalty", "seed")
    kwargs = {key: getattr(args, key) for key in keys}
    kwargs["do_sample"] = True if args.do_sample else False if args.greedy else None
    kwargs["stop_strings"] = args.stop or None
    return kwargs


def template_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"enable_thinking": False} if args.no_thinking else {}


def print_tool_call(call: Any, out: Any = sys.stdout) -> None:
    print(f"\n[tool call] {call.name}({json.dumps(call.arguments, ensure_ascii=False)})", file=out, flush=True)


def generate(args: argparse.Namespace) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    model = open_model(args)
    if args.chat or args.system:
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + [{"role": "user", "content": prompt}]
        target: Any = messages
    else:
        target = prompt
        print(prompt, end="", flush=True)
    tools = load_tools(args.tools) if getattr(args, "tools", None) else None
    start = time.perf_counter()
    stream = model.generate(target, stream=True, tools=tools, **sampling_kwargs(args), **template_kwargs(args))
    for chunk in stream:
        print(chunk.text, end="", flush=True)
        for call in chunk.tool_calls:
            print_tool_call(call)
    elapsed = time.perf_counter() - start
    completion = stream.completion
    print()
    n = len(completion.token_ids)
    print(f"[{completion.finish_reason}: {n} tokens in {elapsed:.2f} s, {n / max(elapsed, 1e-9):.1f} tok/s]", file=sys.stderr)
    return 0


def load_tools(path: str) -> list[dict[str, Any]]:
    """A JSON list of tool schemas ({"type": "function", "function": {...}}); an optional "command"
    beside "function" is what `moeflux chat` runs (after asking) with the arguments on stdin."""
    try:
        with open(path, encoding="utf-8") as file:
            tools = json.load(file)
    except OSError as error:
        raise ConfigError(f"cannot read the tools file {path}: {error.strerror}") from None
    except ValueError as error:
        raise ConfigError(f"the tools file {path} is not valid JSON: {error}") from None
    if not isinstance(tools, list) or not all(isinstance(t, dict) and isinstance(t.get("function"), dict) for t in tools):
        raise ConfigError(f"the tools file {path} must hold a JSON list of {{\"type\": \"function\", \"function\": {{...}}}} objects")
    return tools


def _phase(model: Any, name: str, tokens: int, seconds: float) -> None:
    s = model.stats()
    lookups = s["expert_hits"] + s["expert_misses"]
    line = (f"{name:8s} {tokens:6d} tokens  {seconds * 1e3:9.1f} ms  {tokens / max(seconds, 1e-9):9.1f} tok/s  "
            f"expert hit rate {s['expert_hit_rate']:.3f} ({lookups} lookups)  read {s['expert_bytes_read'] / 2**20:.1f} MiB "
            f"in {s['read_wait_seconds'] * 1e3:.1f} ms waiting")
    if s["read_throughput"]:
        line += f" ({s['read_throughput'] / 2**30:.2f} GiB/s)"
    if "device_hits" in s:
        line += (f"  device hits {int(s['device_hits'])}/{int(s['device_hits'] + s['device_misses'])}, "
                 f"upload {s.get('device_upload_seconds', 0.0) * 1e3:.1f} ms")
    print(line)


def bench(args: argparse.Namespace) -> int:
    if args.prompt_tokens < 1 or args.new_tokens < 1:
        raise ConfigError("--prompt-tokens and --new-tokens must be at least 1")
    model = open_model(args)
    info = model.info
    rng = np.random.default_rng(args.seed if args.seed is not None else 0)
    prompt = rng.integers(0, info["vocab_size"], size=args.prompt_tokens, dtype=np.int32)
    print(f"model {args.model}: {info['model_type']}, {info['n_layers']} layers, {info['n_experts']} experts "
          f"top-{info['experts_per_token']}, backend {args.backend}, host cache {model.stats()['cache_bytes'] / 2**20:.0f} MiB")
    for _ in range(args.warmup):
        model.forward(prompt[:8], logits="last")
        model.reset()
    model.reset_stats()
    start = time.perf_counter()
    logits = model.forward(prompt, logits="last")
    _phase(model, "prefill", len(prompt), time.perf_counter() - start)
    model.reset_stats()
    start = time.perf_counter()
    produced = list(model.generate_tokens([int(np.argmax(logits[0]))], max_new_tokens=args.new_tokens, stop_tokens=[],
                                          do_sample=False))
    _phase(model, "decode", len(produced), time.perf_counter() - start)
    return 0


def verify(args: argparse.Namespace) -> int:
    from .checksums import verify as verify_model
    from .checksums import write_checksums

    if args.write:
        path = write_checksums(args.model, progress=not args.quiet)
        print(f"wrote {path}")
        return 0
    problems = verify_model(args.model, progress=not args.quiet)
    for line in problems:
        print(f"moeflux: {args.model}: {line}", file=sys.stderr)
    if problems:
        print(f"moeflux: {len(problems)} file(s) damaged; copy or convert the model again", file=sys.stderr)
        return 1
    print(f"{args.model}: every file matches its checksum")
    return 0


def devices(args: argparse.Namespace) -> int:
    from . import devices as list_devices

    found = list_devices()
    if args.json:
        print(json.dumps(found, indent=1, default=str))
        return 0
    if not found:
        print("no Vulkan devices (the CPU backend always works)")
        return 0
    for d in found:
        status = "usable" if d.get("usable") else f"not usable: lacks {', '.join(d.get('missing', []))}"
        heaps = sum(int(h.get("size", 0)) for h in d.get("memory_heaps", []) if isinstance(h, dict))
        print(f"{d['index']}: {d['name']} ({d['type']}, Vulkan {d['api_version']}, {heaps / 2**30:.1f} GiB of heaps) {status}")
    return 0
