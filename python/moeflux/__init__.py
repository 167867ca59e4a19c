"""moeflux: run mixture-of-experts language models larger than memory.

Open a packed model with ``moeflux.Model``, convert a Hugging Face checkpoint with
``moeflux.convert``; logits and routing come back as NumPy arrays; ``Model.generate`` takes
text, token ids or chat messages and returns a ``Completion`` (or a ``Stream`` of ``Chunk``s).
"""

from __future__ import annotations

from typing import Any

from .chat import Chat
from .chat_template import ChatTemplate, TemplateError
from .checksums import verify, write_checksums
from .convert import convert
from .errors import (
    BudgetError,
    ConfigError,
    DeviceError,
    Error,
    FormatError,
    InternalError,
    IoError,
    ShapeError,
    Unsupported,
)
from .generation import Chunk, Completion, Stream
from .model import Model, Routing
from .tokenizer import StreamDecoder, Tokenizer
from .tool_calls import ToolCall, parse_tool_calls

__version__ = "0.1.0"

__all__ = [
    "Model",
    "Routing",
    "Chat",
    "Chunk",
    "Completion",
    "Stream",
    "ToolCall",
    "parse_tool_calls",
    "Tokenizer",
    "StreamDecoder",
    "ChatTemplate",
    "TemplateError",
    "convert",
    "verify",
    "write_checksums",
    "devices",
    "supported_model_types",
    "Error",
    "ConfigError",
    "ShapeError",
    "BudgetError",
    "FormatError",
    "IoError",
    "DeviceError",
    "Unsupported",
    "InternalError",
]


def supported_model_types() -> list[str]:
    """The config.json ``model_type`` values moeflux runs."""
    from . import _core

    return list(_core.supported_model_types())


def devices() -> list[dict[str, Any]]:
    """The Vulkan devices: dicts with index, name, type, api_version, driver, memory_heaps,
    max_storage_buffer_range, features, usable and missing (what moeflux needs that the device
    lacks). Pass an index or part of a name as ``Model(..., backend="vulkan", device=...)``.
    Empty without a Vulkan driver; raises ``Unsupported`` when moeflux was built without Vulkan."""
    from . import _core

    return list(_core.devices())
