"""A tiny Qwen3-MoE checkpoint that talks: the tiny random weights of tiny_models with a byte-level
BPE tokenizer trained here, ChatML special tokens, and chat templates written for the tests (system
messages, tools, tool calls and results, enable_thinking, raise_exception, loop controls)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from tokenizers import AddedToken

import tiny_models

VOCAB = 320
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ADDED = ["<tool_call>", "</tool_call>", "<think>", "</think>"]  # plain added tokens, as in Qwen3

# ChatML with tools, in the manner of Qwen's templates (written for these tests).
TOOLS_TEMPLATE = """
{%- if tools %}
{{- '<|im_start|>system\\n' }}
{%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}
{{- 'Tools you may call, one JSON schema per line:\\n' }}
{%- for tool in tools %}{{- tool | tojson + '\\n' }}{%- endfor %}
{{- 'Call one as <tool_call>{"name": ..., "arguments": {...}}</tool_call>.<|im_end|>\\n' }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'system' %}
{%- if not loop.first %}{{- raise_exception('a system message must come first') }}{%- endif %}
{%- elif message.role == 'user' %}
{{- '<|im_start|>user\\n' + message.content + '<|im_end|>\\n' }}
{%- elif message.role == 'assistant' %}
{{- '<|im_start|>assistant\\n' + (message.content or '') }}
{%- for call in message.tool_calls or [] %}
{{- '\\n<tool_call>\\n' + {'name': call.function.name, 'arguments': call.function.arguments} | tojson + '\\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>\\n' }}
{%- elif message.role == 'tool' %}
{{- '<|im_start|>user\\n<tool_response>\\n' + message.content + '\\n</tool_response><|im_end|>\\n' }}
{%- else %}
{{- raise_exception('unknown role ' + message.role) }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\\n' }}
{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}
{%- endif %}
"""

# Whitespace left to trim_blocks / lstrip_blocks, a loop break, {% generation %}, tojson options
# and the special tokens the renderer passes in.
LAYOUT_TEMPLATE = """{{ bos_token }}
{% for message in messages %}
    {% if message.role == 'user' %}
[{{ loop.index }}] {{ message.content | trim }}
    {% elif message.role == 'assistant' %}
{% generation %}{{ message.content }}{% endgeneration %}{{ eos_token }}
    {% endif %}
    {% if loop.index >= 3 %}{% break %}{% endif %}
{% endfor %}
{% if tools %}{{ tools | tojson(indent=2, sort_keys=True) }}{% endif %}
{% if add_generation_prompt %}>>> {% endif %}"""

_CORPUS = [
    "Hello there, how are you today? I am fine, thank you.",
    "The weather in Paris is sunny; in Zürich it rains, and in Kraków it snows. ☀️🌧️❄️",
    "Call a tool with a name and arguments as JSON: {\"name\": \"weather\", \"arguments\": {\"city\": \"Paris\"}}",
    "Numbers 0 1 2 3 42 100 and symbols + - * / = < > ( ) [ ] { } # @ % & ' \" ...",
    "system user assistant tool response think answer briefly",
]


def build_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB - len(ADDED), min_frequency=0, show_progress=False,
                                  special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ADDED])
    assert tok.get_vocab_size() <= VOCAB, tok.get_vocab_size()
    return tok


def build_chat_checkpoint(directory: Path, template: str = TOOLS_TEMPLATE) -> Path:
    """A tiny Qwen3-MoE checkpoint with tokenizer files and `template` in tokenizer_config.json."""
    config = tiny_models.make_config("qwen3_moe_base")
    config.vocab_size = VOCAB
    config.eos_token_id = SPECIAL.index("<|endoftext|>")
    torch.manual_seed(1)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.copy_(1.0 + 0.1 * torch.randn_like(param))
    model.save_pretrained(directory)
    build_tokenizer().save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|endoftext|>",
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "add_bos_token": False,
        "clean_up_tokenization_spaces": False,
        "chat_template": template,
    }))
    (directory / "generation_config.json").write_text(json.dumps({
        "eos_token_id": [SPECIAL.index("<|im_end|>"), SPECIAL.index("<|endoftext|>")],
        "do_sample": True, "temperature": 0.7, "top_k": 20, "top_p": 0.9,
    }))
    return directory


_made: dict[str, tuple[Path, Path]] = {}


def chat_model(tmp_path_factory, template: str = TOOLS_TEMPLATE) -> tuple[Path, Path]:
    """(checkpoint, packed model) of the chat checkpoint with `template`, built once per test run."""
    import moeflux

    if template not in _made:
        hf = build_chat_checkpoint(tmp_path_factory.mktemp("hf-chat"), template)
        packed = tmp_path_factory.mktemp("packed-chat")
        moeflux.convert(hf, packed, overwrite=True, progress=False)
        _made[template] = (hf, packed)
    return _made[template]
