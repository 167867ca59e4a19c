"""Writes a synthetic MoE model with real shapes straight into moeflux's packed format (docs/FORMAT.md):
random quantized expert weights, random dense weights, a config.json the engine reads. Real models
cannot be downloaded where benchmarks run, and timing depends only on shapes, bits and routing.

    python benchmarks/synthetic_model.py OUT --shape qwen3-30b-a3b --layers 48 --expert-bits 4
    python benchmarks/synthetic_model.py OUT --shape qwen3.5-397b-a17b --layers 4 --expert-bits 2

Hybrid shapes (Qwen3.5) keep the real mix in any slice: every fourth layer is full attention, the
others Gated DeltaNet, so N layers time N/4 of each kind as the whole model does.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import numpy as np

SHAPES = {
    # Qwen3-30B-A3B: 48 layers, 128 experts top-8, hidden 2048, expert intermediate 768, 32/4 heads of 128.
    "qwen3-30b-a3b": dict(
        model_type="qwen3_moe",
        hidden_size=2048,
        num_hidden_layers=48,
        num_attention_heads=32,
        num_key_value_heads=4,
        head_dim=128,
        num_experts=128,
        num_experts_per_tok=8,
        moe_intermediate_size=768,
        vocab_size=151936,
    ),
    # Qwen3.5-397B-A17B: 60 layers (45 Gated DeltaNet, 15 gated attention), 512 experts top-10 plus a
    # shared expert, hidden 4096, expert intermediate 1024, 32 query / 2 KV heads of 256, 64 value /
    # 16 key linear heads of 128.
    "qwen3.5-397b-a17b": dict(
        model_type="qwen3_5_moe_text",
        hidden_size=4096,
        num_hidden_layers=60,
        num_attention_heads=32,
        num_key_value_heads=2,
        head_dim=256,
        num_experts=512,
        num_experts_per_tok=10,
        moe_intermediate_size=1024,
        shared_expert_intermediate_size=1024,
        linear_num_key_heads=16,
        linear_num_value_heads=64,
        linear_key_head_dim=128,
        linear_value_head_dim=128,
        linear_conv_kernel_dim=4,
        full_attention_interval=4,
        vocab_size=248320,
    ),
    # The same structure at toy sizes, for tests of this script.
    "qwen3.5-toy": dict(
        model_type="qwen3_5_moe_text",
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        num_experts=16,
        num_experts_per_tok=4,
        moe_intermediate_size=64,
        shared_expert_intermediate_size=64,
        linear_num_key_heads=2,
        linear_num_value_heads=4,
        linear_key_head_dim=32,
        linear_value_head_dim=32,
        linear_conv_kernel_dim=4,
        full_attention_interval=4,
        vocab_size=512,
    ),
}
FILE_ALIGN, BLOCK_ALIGN, SECTION_ALIGN = 4096, 256, 256
EMBED_GAIN, OUTPUT_GAIN = 4.0, 0.1  # see write(): keeps routing token-dependent


def align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def bf16_bits(x: float) -> int:
    return int(np.array([x], np.float32).view(np.uint32)[0] >> 16)


def quant_layout(rows: int, cols: int, bits: int, group: int) -> tuple[int, int, int, int]:
    """(row_bytes, scales_offset, biases_offset, nbytes) of a quantized [rows, cols] tensor."""
    row_bytes = cols * bits // 8
    scale_bytes = rows * (cols // group) * 2
    scales = align(rows * row_bytes, SECTION_ALIGN)
    biases = align(scales + scale_bytes, SECTION_ALIGN)
    return row_bytes, scales, biases, align(biases + scale_bytes, SECTION_ALIGN)


def quantized_tensor(rng: np.random.Generator, rows: int, cols: int, bits: int, group: int, gain: float = 1.0) -> bytes:
    """Random q values with one scale/bias per tensor, chosen so that w has std ~ gain/sqrt(cols)."""
    row_bytes, scales_at, biases_at, nbytes = quant_layout(rows, cols, bits, group)
    levels = (1 << bits) - 1
    q_std = math.sqrt(((levels + 1) ** 2 - 1) / 12)  # std of a uniform integer on [0, levels]
    scale = gain / (q_std * math.sqrt(cols))
    out = np.zeros(nbytes, np.uint8)
    out[: rows * row_bytes] = np.frombuffer(rng.bytes(rows * row_bytes), np.uint8)
    n_groups = rows * (cols // group)
    out[scales_at : scales_at + 2 * n_groups].view(np.uint16)[:] = bf16_bits(scale)
    out[biases_at : biases_at + 2 * n_groups].view(np.uint16)[:] = bf16_bits(-scale * levels / 2)
    return out.tobytes()


def float_tensor(rng: np.random.Generator, shape: tuple[int, ...], scale: float, offset: float = 0.0) -> bytes:
    x = (rng.standard_normal(shape, dtype=np.float32) * scale + offset).astype(np.float32)
    return (x.view(np.uint32) >> 16).astype(np.uint16).tobytes()  # bf16 by truncation: fine for noise


def is_hybrid(cfg: dict) -> bool:
    return cfg["model_type"] != "qwen3_moe"


def model_config(cfg: dict) -> dict:
    """The config.json the engine reads, from a shape."""
    if not is_hybrid(cfg):
        return dict(cfg, architectures=["Qwen3MoeForCausalLM"], intermediate_size=6144, rms_norm_eps=1e-6,
                    rope_theta=1e6, max_position_embeddings=40960, norm_topk_prob=True, tie_word_embeddings=False,
                    mlp_only_layers=[], decoder_sparse_step=1, eos_token_id=151645)
    return dict(cfg, architectures=["Qwen3_5MoeForCausalLM"], rms_norm_eps=1e-6, max_position_embeddings=262144,
                rope_parameters=dict(rope_type="default", rope_theta=1e7, partial_rotary_factor=0.25),
                tie_word_embeddings=False, eos_token_id=248044)


def attention_tensors(cfg: dict, p: str):
    """(name, shape, quantizable, kind, gain) of one layer's token mixer; kind: "linear", "norm" (plain
    weight around 1), "offset_norm" (applied as 1 + w, around 0), "a_log", "dt_bias", "conv"."""
    H, D, nh, nkv = cfg["hidden_size"], cfg["head_dim"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hybrid = is_hybrid(cfg)
    norm = "offset_norm" if hybrid else "norm"
    layer = int(p.split(".")[2])
    if hybrid and (layer + 1) % cfg["full_attention_interval"] != 0:
        HK, HV = cfg["linear_num_key_heads"], cfg["linear_num_value_heads"]
        Kd, Vd = HK * cfg["linear_key_head_dim"], HV * cfg["linear_value_head_dim"]
        a = p + "linear_attn."
        yield a + "in_proj_qkv.weight", (2 * Kd + Vd, H), True, "linear", 1.0
        yield a + "in_proj_z.weight", (Vd, H), True, "linear", 1.0
        yield a + "in_proj_b.weight", (HV, H), True, "linear", 1.0
        yield a + "in_proj_a.weight", (HV, H), True, "linear", 1.0
        yield a + "conv1d.weight", (2 * Kd + Vd, 1, cfg["linear_conv_kernel_dim"]), False, "conv", 1.0
        yield a + "dt_bias", (HV,), False, "dt_bias", 1.0
        yield a + "A_log", (HV,), False, "a_log", 1.0
        yield a + "norm.weight", (cfg["linear_value_head_dim"],), False, "norm", 1.0
        yield a + "out_proj.weight", (H, Vd), True, "linear", OUTPUT_GAIN
        return
    q_rows = nh * D * (2 if hybrid else 1)  # the hybrid's q_proj holds a gate per head too
    yield p + "self_attn.q_proj.weight", (q_rows, H), True, "linear", 1.0
    yield p + "self_attn.k_proj.weight", (nkv * D, H), True, "linear", 1.0
    yield p + "self_attn.v_proj.weight", (nkv * D, H), True, "linear", 1.0
    yield p + "self_attn.o_proj.weight", (H, nh * D), True, "linear", OUTPUT_GAIN
    yield p + "self_attn.q_norm.weight", (D,), False, norm, 1.0
    yield p + "self_attn.k_norm.weight", (D,), False, norm, 1.0


def dense_tensors(cfg: dict, layers: int):
    """Every dense tensor of the model, in file order (see attention_tensors)."""
    H, E, V = cfg["hidden_size"], cfg["num_experts"], cfg["vocab_size"]
    norm = "offset_norm" if is_hybrid(cfg) else "norm"
    # Token identity must dominate the residual stream, or every token routes alike: large
    # embeddings, small layer outputs (o_proj, out_proj, down_proj).
    yield "model.embed_tokens.weight", (V, H), True, "linear", EMBED_GAIN * math.sqrt(H)
    for L in range(layers):
        p = f"model.layers.{L}."
        yield p + "input_layernorm.weight", (H,), False, norm, 1.0
        yield p + "post_attention_layernorm.weight", (H,), False, norm, 1.0
        yield from attention_tensors(cfg, p)
        yield p + "mlp.gate.weight", (E, H), False, "linear", 1.0
        if "shared_expert_intermediate_size" in cfg:
            I_s = cfg["shared_expert_intermediate_size"]
            yield p + "mlp.shared_expert.gate_proj.weight", (I_s, H), True, "linear", 1.0
            yield p + "mlp.shared_expert.up_proj.weight", (I_s, H), True, "linear", 1.0
            yield p + "mlp.shared_expert.down_proj.weight", (H, I_s), True, "linear", OUTPUT_GAIN
            yield p + "mlp.shared_expert_gate.weight", (1, H), False, "linear", 1.0
    yield "model.norm.weight", (H,), False, norm, 1.0
    yield "lm_head.weight", (V, H), True, "linear", 1.0


def write(out: Path, shape: str, layers: int, expert_bits: int, dense_bits: int | None, group: int, seed: int) -> Path:
    cfg = dict(SHAPES[shape], num_hidden_layers=layers)
    H, E, I = cfg["hidden_size"], cfg["num_experts"], cfg["moe_intermediate_size"]
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "experts").mkdir(exist_ok=True)
    (out / "config.json").write_text(json.dumps(model_config(cfg), indent=2))

    dense_entries: list[dict] = []
    with open(out / "dense.bin", "wb") as f:

        # (std, mean) of each kind of float tensor: norms near their identity; A_log and dt_bias as
        # transformers initialises them (decays exp(-A softplus(a + dt_bias)) spread over (0, 1)).
        floats = dict(norm=(0.02, 1.0), offset_norm=(0.02, 0.0), a_log=(0.5, 1.0), dt_bias=(0.5, 1.0))
        for name, shape_, quantizable, kind, gain in dense_tensors(cfg, layers):
            offset = align(f.tell(), FILE_ALIGN)
            f.seek(offset)
            entry = dict(name=name, shape=list(shape_), offset=offset)
            if quantizable and dense_bits:
                data = quantized_tensor(rng, shape_[0], shape_[1], dense_bits, group, gain)
                entry.update(dtype=f"q{dense_bits}", group_size=group, scale_dtype="bf16")
            else:
                std, mean = floats.get(kind, (gain / math.sqrt(shape_[-1]), 0.0))
                data = float_tensor(rng, shape_, std, mean)
                entry.update(dtype="bf16")
            f.write(data)
            entry["nbytes"] = len(data)
            dense_entries.append(entry)
        dense_size = align(f.tell(), FILE_ALIGN)
        f.truncate(dense_size)

    blocks, end = [], 0
    for name, (rows, cols) in (("gate_proj", (I, H)), ("up_proj", (I, H)), ("down_proj", (H, I))):
        offset = align(end, BLOCK_ALIGN)
        nbytes = quant_layout(rows, cols, expert_bits, group)[3]
        blocks.append(dict(name=name, dtype=f"q{expert_bits}", shape=[rows, cols], offset=offset, nbytes=nbytes,
                           group_size=group, scale_dtype="bf16"))
        end = offset + nbytes
    stride = align(end, FILE_ALIGN)
    expert_layers = []
    for L in range(layers):
        path = f"experts/layer_{L:03d}.bin"
        with open(out / path, "wb") as f:
            for _ in range(E):
                record = bytearray(stride)
                for b in blocks:
                    gain = OUTPUT_GAIN if b["name"] == "down_proj" else 1.0
                    record[b["offset"] : b["offset"] + b["nbytes"]] = quantized_tensor(rng, *b["shape"], expert_bits, group, gain)
                f.write(record)
        expert_layers.append(dict(layer=L, file=path, n_experts=E, stride=stride, blocks=blocks))

    manifest = dict(
        format="moeflux-packed",
        version=1,
        model_type=cfg["model_type"],
        dense=dict(file="dense.bin", size=dense_size, alignment=FILE_ALIGN, tensors=dense_entries),
        experts=dict(alignment=FILE_ALIGN, block_alignment=BLOCK_ALIGN, layers=expert_layers),
    )
    (out / "moeflux.json").write_text(json.dumps(manifest))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="qwen3-30b-a3b")
    parser.add_argument("--layers", type=int, default=None, help="decoder layers (default: the real count)")
    parser.add_argument("--expert-bits", type=int, default=4, choices=[2, 3, 4, 8])
    parser.add_argument("--dense-bits", type=int, default=8, choices=[0, 2, 3, 4, 8], help="0: bf16 dense tensors")
    parser.add_argument("--group-size", type=int, default=64, choices=[32, 64, 128])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    layers = args.layers or SHAPES[args.shape]["num_hidden_layers"]
    path = write(args.out, args.shape, layers, args.expert_bits, args.dense_bits or None, args.group_size, args.seed)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    print(json.dumps({"path": str(path), "bytes": size, "layers": layers}))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
