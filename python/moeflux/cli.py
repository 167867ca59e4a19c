"""The ``moeflux`` command line: ``demo``, ``convert`` and ``info`` (more commands join as they are built)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .errors import Error


def _convert(args: argparse.Namespace) -> int:
    from .convert import convert

    report = convert(
        args.src,
        args.dst,
        dtype=args.dtype,
        expert_bits=args.expert_bits,
        dense_bits=args.dense_bits,
        group_size=args.group_size,
        scale_dtype=args.scale_dtype,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(f"wrote {report['bytes_written'] / 1e6:.1f} MB to {args.dst}")
    if report["ignored"]:
        print(f"ignored {len(report['ignored'])} tensors no part of the model uses (e.g. {report['ignored'][0]})")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(prompt=args.prompt, max_new_tokens=args.max_new_tokens, home=args.home, threads=args.threads)
    return 0


def _dtypes(tensors: list[dict]) -> str:
    """"bf16" or "q4 (group 64, bf16 scales)", for each distinct storage of `tensors`, by bytes."""
    by_kind: dict[str, int] = {}
    for t in tensors:
        kind = t["dtype"] if "group_size" not in t else f"{t['dtype']} (group {t['group_size']}, {t['scale_dtype']} scales)"
        by_kind[kind] = by_kind.get(kind, 0) + int(t["nbytes"])
    return ", ".join(sorted(by_kind, key=lambda k: -by_kind[k])) or "none"


def _bytes(n: float) -> str:
    return f"{int(n)} bytes ({n / 2**20:.1f} MiB)"


def _info(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .model import Model

    model = Model(args.model, backend=args.backend, device=args.device, cache_bytes=args.cache_bytes,
                  device_cache_bytes=args.device_cache_bytes)  # first: it names what is wrong with the model
    manifest = json.loads((Path(args.model) / "moeflux.json").read_text())
    info, stats = model.info, model.stats()
    layers = manifest["experts"]["layers"]
    blocks = [b for layer in layers for b in layer["blocks"]]
    expert_bytes = sum(int(layer["stride"]) * int(layer["n_experts"]) for layer in layers)
    print(f"model          {args.model}")
    print(f"model type     {info['model_type']}")
    print(f"layers         {info['n_layers']} ({len(info['moe_layers'])} MoE)")
    print(f"experts        {info['n_experts']} per MoE layer, top-{info['experts_per_token']}")
    print(f"expert dtypes  {_dtypes(blocks)}")
    print(f"dense dtypes   {_dtypes(manifest['dense']['tensors'])}")
    print(f"dense bytes    {_bytes(stats['dense_bytes'])}")
    print(f"expert bytes   {_bytes(expert_bytes)} on disk")
    print(f"backend        {args.backend}")
    available = stats["plan_host_available_bytes"]
    print(f"host cache     {_bytes(stats['plan_host_cache_bytes'])}: {stats['plan_host_source']} "
          f"(MemAvailable {_bytes(available) if available else 'unknown'}; "
          f"smallest {_bytes(stats['plan_host_min_bytes'])}, all experts {_bytes(stats['plan_host_all_bytes'])})")
    if stats["plan_device_source"] == "none":
        print("device cache   none (the backend computes from host memory)")
    else:
        source = "memory-budget extension" if stats["plan_device_free_from_budget_extension"] else "heap size minus ours"
        print(f"device cache   {_bytes(stats['plan_device_cache_bytes'])}: {stats['plan_device_source']} "
              f"(free {_bytes(stats['plan_device_free_bytes'])} from the {source}; "
              f"smallest {_bytes(stats['plan_device_min_bytes'])}, all experts {_bytes(stats['plan_device_all_bytes'])}; "
              f"{int(stats['device_slots'])} slots of {_bytes(stats['device_slot_bytes'])})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moeflux", description="Run mixture-of-experts models larger than memory.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="generate text with the built-in default model (made on first use)")
    demo.add_argument("--prompt", default="The engine reads each expert", help="text to continue")
    demo.add_argument("--max-new-tokens", type=int, default=48, help="tokens to generate (default 48)")
    demo.add_argument("--home", default=None, help="where the default model lives (default: $MOEFLUX_HOME or ~/.cache/moeflux)")
    demo.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    demo.set_defaults(run=_demo)

    conv = commands.add_parser("convert", help="convert a Hugging Face checkpoint directory to the packed format")
    conv.add_argument("src", help="checkpoint directory (config.json, *.safetensors)")
    conv.add_argument("dst", help="output directory for the packed model")
    conv.add_argument("--dtype", choices=["f32", "f16", "bf16"], default=None, help="store float tensors as this type (default: as in the source)")
    conv.add_argument(
        "--expert-bits",
        type=int,
        choices=[8, 4, 3, 2],
        default=None,
        help="quantize every routed expert to this many bits (default: as in the source)",
    )
    conv.add_argument(
        "--dense-bits",
        type=int,
        choices=[8, 4, 3, 2],
        default=None,
        help="quantize attention/MLP projections, embeddings and LM head (never norms or routers) to this many bits",
    )
    conv.add_argument(
        "--group-size", type=int, choices=[32, 64, 128], default=64, help="elements per scale and bias (default 64)"
    )
    conv.add_argument(
        "--scale-dtype", choices=["bf16", "f16"], default="bf16", help="type of scales and biases (default bf16)"
    )
    conv.add_argument("--overwrite", action="store_true", help="replace an existing packed model at DST")
    conv.add_argument("--quiet", action="store_true", help="no progress bar")
    conv.set_defaults(run=_convert)

    info = commands.add_parser("info", help="what a packed model holds, and the expert cache budgets planned for it")
    info.add_argument("model", help="packed model directory")
    info.add_argument("--backend", choices=["cpu", "vulkan"], default="cpu", help="backend to plan for (default cpu)")
    info.add_argument("--device", default=None, help="Vulkan device: an index or part of its name")
    info.add_argument("--cache-bytes", type=int, default=None, help="host expert cache budget (default: planned)")
    info.add_argument("--device-cache-bytes", type=int, default=None, help="device expert cache budget (default: planned)")
    info.set_defaults(run=_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except Error as error:  # one clear line, not a traceback
        print(f"moeflux: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("moeflux: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
