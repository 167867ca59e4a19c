"""A NumPy reference for moeflux's quantized tensors, written from docs/FORMAT.md (section 6) alone:
reading tensors out of a packed model through moeflux.json, dequantizing them, and quantizing and
packing weights the way MLX checkpoints store them (uint32 words, each value's bits LSB first)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

SECTION = 256  # every section of a quantized tensor starts at a multiple of 256 bytes


def align(value: int, alignment: int = SECTION) -> int:
    return -(-value // alignment) * alignment


def decode16(raw: np.ndarray, dtype: str) -> np.ndarray:
    """uint16 bit patterns of bf16 or f16 -> float32."""
    raw = np.ascontiguousarray(raw, dtype=np.uint16)
    if dtype == "bf16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.view(np.float16).astype(np.float32)


def encode16(values: np.ndarray, dtype: str) -> np.ndarray:
    """float32 -> uint16 bit patterns of bf16 or f16, rounded to nearest even."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    if dtype == "f16":
        return values.astype(np.float16).view(np.uint16)
    bits = values.view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def dequantize(
    block: bytes, shape: list[int], bits: int, group: int, scale_dtype: str
) -> tuple[np.ndarray, np.ndarray]:
    """A packed quantized tensor -> (values [rows, cols], each element's group scale [rows, cols])."""
    rows, cols = shape
    row_bytes = cols * bits // 8
    n_groups = rows * (cols // group)
    scales_at = align(rows * row_bytes)
    biases_at = align(scales_at + 2 * n_groups)
    assert len(block) == align(biases_at + 2 * n_groups)
    packed = np.frombuffer(block, np.uint8, rows * row_bytes).reshape(rows, row_bytes)
    # One little-endian bit stream per row; element c is bits c*bits .. c*bits+bits-1, LSB first.
    stream = np.unpackbits(packed, axis=1, bitorder="little").reshape(rows, cols, bits)
    q = (stream.astype(np.uint32) << np.arange(bits, dtype=np.uint32)).sum(axis=2)
    scales = decode16(np.frombuffer(block, np.uint16, n_groups, scales_at), scale_dtype).reshape(rows, -1)
    biases = decode16(np.frombuffer(block, np.uint16, n_groups, biases_at), scale_dtype).reshape(rows, -1)
    scale = np.repeat(scales, group, axis=1)
    return q.astype(np.float32) * scale + np.repeat(biases, group, axis=1), scale


class PackedModel:
    """The tensors of a packed model directory, found through moeflux.json only."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.manifest = json.loads((self.dir / "moeflux.json").read_text())
        self.dense_bytes = (self.dir / "dense.bin").read_bytes()
        self.dense_entries = {t["name"]: t for t in self.manifest["dense"]["tensors"]}
        self.layers = {layer["layer"]: layer for layer in self.manifest["experts"]["layers"]}

    def dense(self, name: str) -> tuple[dict, bytes]:
        entry = self.dense_entries[name]
        return entry, self.dense_bytes[entry["offset"] : entry["offset"] + entry["nbytes"]]

    def expert(self, layer: int, expert: int, block: str) -> tuple[dict, bytes]:
        spec = self.layers[layer]
        entry = next(b for b in spec["blocks"] if b["name"] == block)
        with open(self.dir / spec["file"], "rb") as f:
            f.seek(expert * spec["stride"] + entry["offset"])
            return entry, f.read(entry["nbytes"])

    @staticmethod
    def values(entry: dict, data: bytes) -> tuple[np.ndarray, np.ndarray | None]:
        """(values, per-element scale or None for float tensors)."""
        dtype = entry["dtype"]
        if dtype.startswith("q"):
            return dequantize(data, entry["shape"], int(dtype[1:]), entry["group_size"], entry["scale_dtype"])
        if dtype == "f32":
            return np.frombuffer(data, np.float32).reshape(entry["shape"]), None
        return decode16(np.frombuffer(data, np.uint16), dtype).reshape(entry["shape"]), None


def mlx_quantize(w: np.ndarray, bits: int, group: int, scale_dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """w [..., rows, cols] -> MLX's (weight uint32 [..., rows, cols*bits/32], scales, biases uint16 bit
    patterns [..., rows, cols/group]), with w ~ q * scale + bias."""
    lead, cols = w.shape[:-1], w.shape[-1]
    groups = w.reshape(-1, cols // group, group).astype(np.float32)
    levels = (1 << bits) - 1
    lo, hi = groups.min(axis=2), groups.max(axis=2)
    biases = encode16(lo, scale_dtype)
    scales = encode16(np.maximum((hi - lo) / levels, 1e-6), scale_dtype)
    b, s = decode16(biases, scale_dtype)[..., None], decode16(scales, scale_dtype)[..., None]
    q = np.clip(np.rint((groups - b) / s), 0, levels).astype(np.uint64).reshape(-1, cols)
    # Element c's bit t sits at bit k = c * bits + t of the row: bit k % 32 of word k // 32.
    words = np.zeros((cols * bits // 32, q.shape[0]), np.uint64)
    for t in range(bits):
        k = np.arange(cols) * bits + t
        bit = (q >> np.uint64(t)) & np.uint64(1)
        np.add.at(words, k // 32, (bit << (k % 32).astype(np.uint64)).T)  # distinct bits: + is |
    words = words.T
    shape_groups = (*lead, cols // group)
    return (
        words.astype(np.uint32).reshape(*lead, -1),
        scales.reshape(shape_groups),
        biases.reshape(shape_groups),
    )


def mlx_dequantize(
    words: np.ndarray, scales: np.ndarray, biases: np.ndarray, bits: int, scale_dtype: str
) -> np.ndarray:
    """The inverse of mlx_quantize, reading each value from its 32-bit words."""
    cols = words.shape[-1] * 32 // bits
    flat = words.reshape(-1, words.shape[-1]).astype(np.uint64)
    q = np.zeros((flat.shape[0], cols), np.uint64)
    for t in range(bits):
        k = np.arange(cols) * bits + t
        q |= ((flat[:, k // 32] >> (k % 32).astype(np.uint64)) & np.uint64(1)) << np.uint64(t)
    group = cols // scales.shape[-1]
    s = np.repeat(decode16(scales, scale_dtype).reshape(flat.shape[0], -1), group, axis=1)
    b = np.repeat(decode16(biases, scale_dtype).reshape(flat.shape[0], -1), group, axis=1)
    return (q.astype(np.float32) * s + b).reshape(*words.shape[:-1], cols)


def write_safetensors(path: Path, tensors: dict[str, tuple[str, np.ndarray]]) -> None:
    """Writes {name: (safetensors dtype, array)} byte for byte (numpy's writer has no BF16)."""
    header, blobs, offset = {}, [], 0
    for name, (dtype, array) in tensors.items():
        data = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
