"""Built-in default model: a small random-weight Qwen3-MoE checkpoint.

`write_default_checkpoint` writes a complete Hugging Face-format checkpoint
directory (config, float32 safetensors weights, byte-level BPE tokenizer with
a ChatML chat template, generation config) without any network access, so
`moeflux demo` works out of the box. Output is deterministic in the seed.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile

import numpy as np
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

__all__ = ["DEFAULT_MODEL_CONFIG", "write_default_checkpoint"]

SPECIAL_TOKENS: list[str] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 1024
BOS_TOKEN, EOS_TOKEN, PAD_TOKEN = "<|endoftext|>", "<|im_end|>", "<|endoftext|>"
BOS_ID, EOS_ID = SPECIAL_TOKENS.index(BOS_TOKEN), SPECIAL_TOKENS.index(EOS_TOKEN)
ROPE_THETA = 1000000.0

DEFAULT_MODEL_CONFIG: dict = {
    "architectures": ["Qwen3MoeForCausalLM"],
    "model_type": "qwen3_moe",
    "vocab_size": VOCAB_SIZE,
    "hidden_size": 256,
    "intermediate_size": 768,
    "num_hidden_layers": 8,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "hidden_act": "silu",
    "max_position_embeddings": 4096,
    "initializer_range": 0.02,
    "rms_norm_eps": 1e-6,
    "use_cache": True,
    "tie_word_embeddings": False,
    "rope_theta": ROPE_THETA,
    "rope_scaling": None,
    "rope_parameters": {"rope_type": "default", "rope_theta": ROPE_THETA},
    "attention_bias": False,
    "attention_dropout": 0.0,
    "use_sliding_window": False,
    "sliding_window": None,
    "max_window_layers": 8,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [0],
    "num_experts": 32,
    "num_experts_per_tok": 4,
    "moe_intermediate_size": 256,
    "norm_topk_prob": True,
    "output_router_logits": False,
    "router_aux_loss_coef": 0.001,
    "bos_token_id": BOS_ID,
    "eos_token_id": EOS_ID,
    "torch_dtype": "float32",
    "dtype": "float32",
}

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Original plain prose used only to train the tokenizer's merges.
_CORPUS = """\
The small river ran past the mill and under the old stone bridge before it
turned east toward the marshes. In the spring the water rose high enough to
cover the lowest steps, and children would sit on the wall to watch leaves,
sticks and the occasional lost boot drift by. Nobody in the village could
remember when the bridge was built, but everyone agreed it had outlived the
people who argued about repairing it.

A computer program is a list of careful instructions. Each instruction does
something simple: it adds two numbers, moves a value from one place to
another, or compares a result and jumps somewhere else. The surprising thing
is how much can be built from such plain pieces. Given enough memory and
patience, a machine that only adds and compares can draw pictures, play
music, translate languages, and answer questions written in ordinary words.

When you bake bread, the dough needs time. Mix flour, water, salt and a
little yeast, then fold it gently every half hour. The gluten grows strong,
the bubbles gather, and the loaf becomes light. If you hurry, the crumb will
be dense and the crust pale. Good bakers say that the oven is the easy part;
waiting is the real work.

Weather forecasts describe probabilities rather than promises. A seventy
percent chance of rain means that, on many days with similar conditions, it
rained on about seven out of ten. Forecasters study pressure, temperature,
humidity and wind, then run large numerical models that split the sky into
small boxes and step the physics forward minute by minute.

Learning a new language is mostly about listening. At first every sentence
sounds like a single long word. Slowly you notice the gaps, then familiar
phrases, then the rhythm of questions and replies. Mistakes are useful: each
one shows you a rule you had not yet noticed. After a year you may dream in
the new tongue, and after ten you may forget which one you learned first.

The library opened at nine o'clock on weekdays and at ten on Saturday. Its
shelves held history, poetry, maps, cookbooks, manuals for engines and
guides to birds. The quiet reading room had tall windows facing north, so
the light stayed soft all afternoon. Visitors could borrow up to twelve
books at once, though most chose two or three and returned them late.

Mixture of experts models route each token to a few specialists chosen by a
small gating network. Only the selected experts run, so the model can hold
many parameters while spending little compute per token. Balancing the load
matters: if every token picks the same expert, the others sit idle and learn
nothing. Engineers measure throughput, latency, memory bandwidth and cache
behaviour to decide how experts should be placed across devices.

A good map leaves things out. It shows the roads you need and hides the
thousands of details that would only get in the way: the colour of each
fence, the height of every tree, the names of dogs in each garden. Choosing
what to omit is harder than choosing what to include, and every mapmaker
must decide which traveller the map is meant to serve.

On clear winter nights the stars seem sharper because cold, dry air holds
less haze. Find the three bright points in a row and you have found the belt
of the hunter; follow them downward and the brightest star in the sky waits
low above the horizon. Planets do not twinkle much, which is one quick way
to tell them apart from distant suns.

Questions? Answers! Numbers like 0, 1, 2, 3, 42, 100, 2024 and 3.14159 appear
in text, along with symbols such as +, -, *, /, =, <, >, (, ), [, ], {, }, #,
@, %, & and quotes "like this" or 'like that'. Good tools handle them all.
"""


def _build_tokenizer() -> Tokenizer:
    """Train a deterministic byte-level BPE tokenizer on the embedded corpus."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=0,
        show_progress=False,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_CORPUS.splitlines(keepends=True), trainer=trainer)
    if tok.get_vocab_size() != VOCAB_SIZE:
        raise RuntimeError(f"tokenizer vocab is {tok.get_vocab_size()}, expected {VOCAB_SIZE}")
    for i, name in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(name) != i:
            raise RuntimeError(f"special token {name!r} is not at id {i}")
    return tok


def _build_weights(cfg: dict, seed: int) -> dict[str, np.ndarray]:
    """Random float32 weights, scaled so greedy decoding stays varied."""
    rng = np.random.default_rng(seed)
    hid, vocab = cfg["hidden_size"], cfg["vocab_size"]
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    inter, moe_inter, n_exp = cfg["intermediate_size"], cfg["moe_intermediate_size"], cfg["num_experts"]
    proj_std = cfg["initializer_range"]

    def normal(shape: tuple[int, ...], std: float) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(std)).astype(np.float32)

    def norm(dim: int) -> np.ndarray:
        return (1.0 + normal((dim,), 0.05)).astype(np.float32)

    w: dict[str, np.ndarray] = {"model.embed_tokens.weight": normal((vocab, hid), 1.0)}
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        w[p + "input_layernorm.weight"] = norm(hid)
        w[p + "post_attention_layernorm.weight"] = norm(hid)
        w[p + "self_attn.q_proj.weight"] = normal((nh * hd, hid), 2.0 / np.sqrt(hid))
        w[p + "self_attn.k_proj.weight"] = normal((nkv * hd, hid), 2.0 / np.sqrt(hid))
        w[p + "self_attn.v_proj.weight"] = normal((nkv * hd, hid), 1.0 / np.sqrt(hid))
        w[p + "self_attn.o_proj.weight"] = normal((hid, nh * hd), 1.0 / np.sqrt(nh * hd))
        w[p + "self_attn.q_norm.weight"] = norm(hd)
        w[p + "self_attn.k_norm.weight"] = norm(hd)
        sparse = layer not in cfg["mlp_only_layers"] and (layer + 1) % cfg["decoder_sparse_step"] == 0
        if not sparse:
            w[p + "mlp.gate_proj.weight"] = normal((inter, hid), 1.0 / np.sqrt(hid))
            w[p + "mlp.up_proj.weight"] = normal((inter, hid), 1.0 / np.sqrt(hid))
            w[p + "mlp.down_proj.weight"] = normal((hid, inter), 1.0 / np.sqrt(inter))
            continue
        w[p + "mlp.gate.weight"] = normal((n_exp, hid), 2.0 / np.sqrt(hid))
        for e in range(n_exp):
            q = f"{p}mlp.experts.{e}."
            w[q + "gate_proj.weight"] = normal((moe_inter, hid), 1.0 / np.sqrt(hid))
            w[q + "up_proj.weight"] = normal((moe_inter, hid), 1.0 / np.sqrt(hid))
            w[q + "down_proj.weight"] = normal((hid, moe_inter), 1.0 / np.sqrt(moe_inter))
    w["model.norm.weight"] = norm(hid)
    w["lm_head.weight"] = normal((vocab, hid), proj_std * 4.0)
    return w


def _is_complete(path: pathlib.Path) -> bool:
    return all((path / f).is_file() for f in ("config.json", "model.safetensors", "tokenizer.json"))


def _write_json(path: pathlib.Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def _write_into(tmp: pathlib.Path, seed: int) -> None:
    cfg = dict(DEFAULT_MODEL_CONFIG)
    tok = _build_tokenizer()
    tok.save(str(tmp / "tokenizer.json"))
    _write_json(tmp / "config.json", cfg)
    save_file(_build_weights(cfg, seed), str(tmp / "model.safetensors"), metadata={"format": "pt"})
    _write_json(tmp / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "pad_token": PAD_TOKEN,
        "unk_token": None,
        "add_bos_token": False,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": cfg["max_position_embeddings"],
        "chat_template": CHAT_TEMPLATE,
    })
    _write_json(tmp / "generation_config.json", {
        "bos_token_id": BOS_ID,
        "eos_token_id": [EOS_ID, BOS_ID],
        "pad_token_id": SPECIAL_TOKENS.index(PAD_TOKEN),
        "do_sample": False,
    })


def write_default_checkpoint(path: str | os.PathLike, *, seed: int = 0) -> pathlib.Path:
    """Write the default checkpoint to `path` (atomically) and return it.

    An existing complete checkpoint at `path` is left untouched. An existing
    empty directory is replaced; any other existing path raises FileExistsError.
    """
    target = pathlib.Path(path).expanduser().absolute()
    if _is_complete(target):
        return target
    if target.exists() and not (target.is_dir() and not any(target.iterdir())):
        raise FileExistsError(f"{target} exists and is not a complete checkpoint")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it 0700
        _write_into(tmp, seed)
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        try:
            os.rename(tmp, target)
        except OSError:
            if not _is_complete(target):  # lost a race only if the winner finished
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
