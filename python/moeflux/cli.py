"""The ``moeflux`` command line: demo, convert, generate, chat, bench, info, verify, devices. Every
error a person can cause is one line on stderr (``moeflux: ErrorType: what to do``), exit status 1."""

from __future__ import annotations

import argparse
import json
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


def _memory_needs(path: str, info: dict, manifest: dict) -> None:
    """The KV cache per token and what the directory holds besides weights."""
    from pathlib import Path

    from .chat_template import ChatTemplate
    from .tokenizer import Tokenizer

    config = json.loads((Path(path) / "config.json").read_text())
    config = config.get("text_config") or config  # a multimodal checkpoint's language model
    heads = config.get("num_key_value_heads") or config.get("num_attention_heads", 0)
    head_dim = config.get("head_dim") or config.get("hidden_size", 0) // max(config.get("num_attention_heads", 1), 1)
    types = config.get("layer_types")
    if types:
        attention_layers = sum(t == "full_attention" for t in types)
    elif "linear_num_value_heads" in config:  # the hybrid: every full_attention_interval-th layer (default 4)
        attention_layers = info["n_layers"] // config.get("full_attention_interval", 4)
    else:
        attention_layers = info["n_layers"]
    kv = 2 * attention_layers * heads * head_dim * 4  # float32 keys and values
    print(f"kv cache       {_bytes(kv * 1000)} per 1000 tokens of context ({attention_layers} attention layers)")
    tokenizer = Tokenizer.from_dir(path)
    print(f"tokenizer      {f'{tokenizer.vocab_size} tokens' if tokenizer else 'none (token ids only)'}")
    template = ChatTemplate.from_dir(Path(path), tokenizer.special_tokens if tokenizer else {})
    print(f"chat template  {'yes' if template else 'none'}")
    print(f"checksums      {'yes (moeflux verify checks them)' if (Path(path) / 'checksums.json').exists() else 'none'}")


def _info(args: argparse.Namespace) -> int:
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
    _memory_needs(args.model, info, manifest)
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


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="packed model directory (made by `moeflux convert`)")
    group = parser.add_argument_group("where it runs")
    group.add_argument("--backend", choices=["cpu", "vulkan"], default="cpu", help="compute on the CPU or a Vulkan GPU (default cpu)")
    group.add_argument("--device", default=None, help="Vulkan device: an index or part of its name (see `moeflux devices`)")
    group.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    group.add_argument("--cache-bytes", type=int, default=None, help="host memory for cached experts (default: planned from free memory)")
    group.add_argument("--device-cache-bytes", type=int, default=None, help="GPU memory for cached experts (default: planned)")


def _sampling_options(parser: argparse.ArgumentParser, *, prompt_options: bool = True) -> None:
    group = parser.add_argument_group("generation (unset options come from the model's generation_config.json)")
    group.add_argument("--max-new-tokens", type=int, default=None, help="most tokens to generate per reply (default 256)")
    mode = group.add_mutually_exclusive_group()
    mode.add_argument("--do-sample", action="store_true", help="sample (the default when a sampling option below is given)")
    mode.add_argument("--greedy", action="store_true", help="always take the most likely token")
    group.add_argument("--temperature", type=float, default=None, help="sampling temperature (> 0; 0 means greedy)")
    group.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens (0: all)")
    group.add_argument("--top-p", type=float, default=None, help="sample among the most likely tokens whose probability adds up to p")
    group.add_argument("--min-p", type=float, default=None, help="drop tokens less likely than min-p times the most likely")
    group.add_argument("--repetition-penalty", type=float, default=None, help="divide the logits of tokens already seen (> 1 repeats less)")
    group.add_argument("--presence-penalty", type=float, default=None, help="subtract from the logit of every token generated so far")
    group.add_argument("--frequency-penalty", type=float, default=None, help="subtract per occurrence among generated tokens")
    group.add_argument("--seed", type=int, default=None, help="seed of the sampler, for repeatable output")
    group.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop when the text contains TEXT (repeatable)")
    if prompt_options:
        template = parser.add_argument_group("chat template")
        template.add_argument("--system", default=None, help="system message")
        template.add_argument("--tools", default=None, metavar="FILE",
                              help="JSON list of tool schemas ({\"type\": \"function\", \"function\": {...}}); "
                                   "in chat, a \"command\" beside \"function\" runs the tool, after you confirm")
        template.add_argument("--no-thinking", action="store_true", help="pass enable_thinking=False to templates that support it")


def build_parser() -> argparse.ArgumentParser:
    from . import cli_chat, cli_commands

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

    gen = commands.add_parser("generate", help="stream a continuation of a prompt (or a chat reply with --chat)")
    _model_options(gen)
    gen.add_argument("prompt", help="the prompt text; - reads it from stdin")
    gen.add_argument("--chat", action="store_true", help="send the prompt as a user message through the chat template")
    _sampling_options(gen)
    gen.set_defaults(run=cli_commands.generate)

    chat = commands.add_parser("chat", help="talk with a model: history, /reset, /save, /load; tool calls run after you confirm")
    _model_options(chat)
    _sampling_options(chat)
    chat.set_defaults(run=cli_chat.chat)

    bench = commands.add_parser("bench", help="measure prefill and decode speed, expert cache hit rates and read times")
    _model_options(bench)
    bench.add_argument("--prompt-tokens", type=int, default=128, help="prompt length for the prefill phase (default 128)")
    bench.add_argument("--new-tokens", type=int, default=32, help="tokens to decode greedily (default 32)")
    bench.add_argument("--warmup", type=int, default=1, help="short untimed runs first (default 1)")
    bench.add_argument("--seed", type=int, default=None, help="seed of the random prompt")
    bench.set_defaults(run=cli_commands.bench)

    info = commands.add_parser("info", help="what a packed model holds, what it needs in memory, and the expert cache plan")
    info.add_argument("model", help="packed model directory")
    info.add_argument("--backend", choices=["cpu", "vulkan"], default="cpu", help="backend to plan for (default cpu)")
    info.add_argument("--device", default=None, help="Vulkan device: an index or part of its name")
    info.add_argument("--cache-bytes", type=int, default=None, help="host expert cache budget (default: planned)")
    info.add_argument("--device-cache-bytes", type=int, default=None, help="device expert cache budget (default: planned)")
    info.set_defaults(run=_info)

    verify = commands.add_parser("verify", help="check every file of a packed model against its checksums")
    verify.add_argument("model", help="packed model directory")
    verify.add_argument("--write", action="store_true", help="record checksums of the files as they are now (models converted before checksums existed)")
    verify.add_argument("--quiet", action="store_true", help="no progress bar")
    verify.set_defaults(run=cli_commands.verify)

    devices = commands.add_parser("devices", help="list the Vulkan devices and whether moeflux can use them")
    devices.add_argument("--json", action="store_true", help="everything known about each device, as JSON")
    devices.set_defaults(run=cli_commands.devices)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except Error as error:  # one clear line, not a traceback (context lines joined)
        message = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
        print(f"moeflux: {type(error).__name__}: {message}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"moeflux: {error.strerror or error}: {error.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("moeflux: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
