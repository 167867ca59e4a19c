"""The CPU backend's matmul for quantized and 16-bit weights against NumPy: weights packed here from the
documented layout (docs/FORMAT.md, format/quant.h), dequantized here, then multiplied in float64."""

from __future__ import annotations

import numpy as np
import pytest

import moeflux
from moeflux import _core

testing = _core._testing
RTOL = 1e-5  # relative to sum_j |x_j w_j| per output
ALIGN = 256  # every section of a quantized tensor starts at a multiple of this


def align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def half_bits(values: np.ndarray, scale_dtype: str) -> np.ndarray:
    """float32 -> uint16 bits of f16 or bf16 (bf16 by truncation: any value of the type will do)."""
    if scale_dtype == "f16":
        return values.astype(np.float16).view(np.uint16)
    return (values.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


def half_values(bits: np.ndarray, scale_dtype: str) -> np.ndarray:
    if scale_dtype == "f16":
        return bits.view(np.float16).astype(np.float64)
    return (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def pack(q: np.ndarray, scales: np.ndarray, biases: np.ndarray, bits: int, scale_dtype: str) -> np.ndarray:
    """The stored bytes: each row's q values as one little-endian bit stream (element j at bits
    [j*bits, (j+1)*bits)), then scales [rows, groups] and biases, each section 256-aligned."""
    rows, cols = q.shape
    stream = ((q[..., None] >> np.arange(bits)) & 1).astype(np.uint8).reshape(rows, cols * bits)
    packed = np.packbits(stream, axis=1, bitorder="little")
    scale_at = align(packed.size)
    bias_at = align(scale_at + scales.size * 2)
    out = np.zeros(align(bias_at + biases.size * 2), np.uint8)
    out[: packed.size] = packed.ravel()
    out[scale_at : scale_at + scales.size * 2] = half_bits(scales, scale_dtype).view(np.uint8).ravel()
    out[bias_at : bias_at + biases.size * 2] = half_bits(biases, scale_dtype).view(np.uint8).ravel()
    return out


def dequantize(buf: np.ndarray, rows: int, cols: int, bits: int, group: int, scale_dtype: str) -> np.ndarray:
    """w = q * scale + bias, read back from the stored bytes, in float64."""
    row_bytes = cols * bits // 8
    groups = cols // group
    scale_at = align(rows * row_bytes)
    bias_at = align(scale_at + rows * groups * 2)
    stream = np.unpackbits(buf[: rows * row_bytes].reshape(rows, row_bytes), axis=1, bitorder="little")
    q = stream.reshape(rows, cols, bits).astype(np.int64) @ (1 << np.arange(bits))
    scales = half_values(buf[scale_at : scale_at + rows * groups * 2].view(np.uint16), scale_dtype)
    biases = half_values(buf[bias_at : bias_at + rows * groups * 2].view(np.uint16), scale_dtype)
    scales = np.repeat(scales.reshape(rows, groups), group, axis=1)
    biases = np.repeat(biases.reshape(rows, groups), group, axis=1)
    return q * scales + biases


def random_quantized(rows, cols, bits, group, scale_dtype, seed):
    rng = np.random.default_rng(seed)
    q = rng.integers(0, 1 << bits, size=(rows, cols))
    scales = rng.uniform(0.5, 2.0, size=(rows, cols // group)).astype(np.float32) / (1 << bits)
    biases = rng.uniform(-1.0, 0.0, size=(rows, cols // group)).astype(np.float32)
    return pack(q, scales, biases, bits, scale_dtype)


def check(y: np.ndarray, x: np.ndarray, w: np.ndarray) -> None:
    x64 = x.astype(np.float64)
    ref = x64 @ w.T
    bound = RTOL * (np.abs(x64) @ np.abs(w).T)
    assert y.dtype == np.float32 and y.shape == ref.shape
    assert np.all(np.abs(y - ref) <= bound), float(np.max(np.abs(y - ref) / bound))


@pytest.mark.parametrize("portable", [False, True], ids=["best", "portable"])
@pytest.mark.parametrize("scale_dtype", ["bf16", "f16"])
@pytest.mark.parametrize("group", [32, 64, 128])
@pytest.mark.parametrize("bits", [8, 4, 3, 2])
def test_quantized_matmul_matches_numpy(bits, group, scale_dtype, portable):
    N, K = 33, 3 * group
    buf = random_quantized(N, K, bits, group, scale_dtype, seed=bits * 1000 + group)
    w = dequantize(buf, N, K, bits, group, scale_dtype)
    for T in (1, 3, 6, 17):  # fused decode kernels (up to 8 rows), then dequantized tiles + sgemm
        x = np.random.default_rng(T).uniform(-1, 1, size=(T, K)).astype(np.float32)
        y = testing.matmul(x, buf, dtype=f"q{bits}", shape=(N, K), group_size=group, scale_dtype=scale_dtype,
                           threads=2, portable=portable)
        check(y, x, w)


@pytest.mark.parametrize("bits", [8, 4, 3, 2])
def test_long_rows_and_thread_counts(bits):
    group, N, K = 64, 7, 4096 + 64
    buf = random_quantized(N, K, bits, group, "bf16", seed=bits)
    w = dequantize(buf, N, K, bits, group, "bf16")
    for T in (1, 64):
        x = np.random.default_rng(T).uniform(-1, 1, size=(T, K)).astype(np.float32)
        ys = [testing.matmul(x, buf, dtype=f"q{bits}", shape=(N, K), group_size=group, threads=n) for n in (1, 2, 3)]
        check(ys[0], x, w)
        for y in ys[1:]:
            np.testing.assert_array_equal(y.view(np.uint32), ys[0].view(np.uint32))


def test_quantize_writes_the_documented_layout():
    rng = np.random.default_rng(5)
    for bits, group, scale_dtype in [(4, 64, "bf16"), (3, 32, "f16"), (8, 128, "bf16"), (2, 64, "f16")]:
        src = rng.uniform(-1, 1, size=(9, 2 * group)).astype(np.float32)
        buf = testing.quantize(src, bits, group, scale_dtype)
        assert buf.dtype == np.uint8
        groups = src.shape[1] // group
        assert buf.size == align(align(align(9 * src.shape[1] * bits // 8) + 9 * groups * 2) + 9 * groups * 2)
        w = dequantize(buf, *src.shape, bits, group, scale_dtype)
        step = (np.ptp(src.reshape(9, groups, group), axis=2) / ((1 << bits) - 1)).repeat(group, axis=1)
        assert np.all(np.abs(w - src) <= 0.5 * step * 1.01 + 1e-6)


@pytest.mark.parametrize("dtype", ["f16", "bf16", "f32"])
def test_float_weights_match_numpy(dtype):
    N, K = 29, 67
    rng = np.random.default_rng(8)
    values = rng.uniform(-1, 1, size=(N, K)).astype(np.float32)
    if dtype == "f32":
        stored = values.view(np.uint8).ravel()
        w = values.astype(np.float64)
    else:
        bits = half_bits(values, dtype)
        stored = bits.view(np.uint8).ravel()
        w = half_values(bits, dtype)
    for T in (1, 4, 9):
        x = rng.uniform(-1, 1, size=(T, K)).astype(np.float32)
        for portable in (False, True):
            check(testing.matmul(x, stored, dtype=dtype, shape=(N, K), portable=portable), x, w)


def test_bad_arguments_raise_typed_errors():
    buf = random_quantized(4, 64, 4, 64, "bf16", seed=1)
    x = np.zeros((1, 64), np.float32)
    with pytest.raises(moeflux.ConfigError):
        testing.matmul(x, buf, dtype="q4", shape=(4, 64), group_size=48)
    with pytest.raises(moeflux.FormatError):
        testing.matmul(x, buf[:-1], dtype="q4", shape=(4, 64), group_size=64)
    with pytest.raises(moeflux.FormatError):
        testing.matmul(x, buf, dtype="q5", shape=(4, 64))
    with pytest.raises(ValueError):
        testing.quantize(np.zeros((2, 40), np.float32), 4, 32)
    assert testing.simd() in ("avx2", "portable")
