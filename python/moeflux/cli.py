"""The ``moeflux`` command line: ``demo`` and ``convert`` (more commands join as they are built)."""

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
