"""CPU matmul throughput for quantized weights of real shapes, through moeflux._core._testing.

Qwen3-30B-A3B: an expert's gate/up [768, 2048] and down [2048, 768] at 4 bits (group 64), the
attention q_proj [4096, 2048] at 8 bits. Decode (T=1) is reported as GB/s of weight bytes read
(q + scales + biases), prefill (T=512) as GFLOP/s (2 T N K). Threads: 1 and all cores. The same
weight is multiplied again and again, so it stays in cache where it fits: decode figures are the
kernels' own rate, an upper bound on what streaming the weight from DRAM allows.

    python benchmarks/cpu_matvec.py [--portable] [--seconds 0.5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform

import numpy as np

from moeflux import _core

testing = _core._testing

SHAPES = [  # name, (N, K), bits, group
    ("expert gate/up", (768, 2048), 4, 64),
    ("expert down", (2048, 768), 4, 64),
    ("attn q_proj", (4096, 2048), 8, 64),
]
ROWS = (1, 512)


def seconds_per_call(x, w, shape, bits, group, threads, portable, budget):
    kwargs = dict(dtype=f"q{bits}", shape=shape, group_size=group, threads=threads, portable=portable)
    once = testing.time_matmul(x, w, repeat=1, **kwargs)
    repeat = max(1, min(2000, int(budget / max(once, 1e-9))))
    return testing.time_matmul(x, w, repeat=repeat, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--portable", action="store_true", help="force the portable (non-AVX2) kernels")
    parser.add_argument("--seconds", type=float, default=0.5, help="time budget per measurement")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    kernels = "portable" if args.portable else testing.simd()
    print(f"# {platform.processor() or platform.machine()}, {cores} cores, kernels: {kernels}")
    print(f"{'weight':<16} {'shape':<13} {'bits':>4} {'T':>4} {'threads':>7} {'ms/call':>9} {'result':>14}")
    rng = np.random.default_rng(0)
    results = []
    for name, (N, K), bits, group in SHAPES:
        w = testing.quantize(rng.uniform(-1, 1, size=(N, K)).astype(np.float32), bits, group, "bf16")
        for T in ROWS:
            x = rng.uniform(-1, 1, size=(T, K)).astype(np.float32)
            for threads in sorted({1, cores}):
                s = seconds_per_call(x, w, (N, K), bits, group, threads, args.portable, args.seconds)
                if T == 1:
                    value, unit = w.nbytes / s / 1e9, "GB/s"
                else:
                    value, unit = 2.0 * T * N * K / s / 1e9, "GFLOP/s"
                print(f"{name:<16} {f'[{N}, {K}]':<13} {bits:>4} {T:>4} {threads:>7} {s * 1e3:>9.3f} "
                      f"{value:>8.2f} {unit}")
                results.append(dict(weight=name, shape=[N, K], bits=bits, group=group, T=T, threads=threads,
                                    seconds=s, value=value, unit=unit, weight_bytes=int(w.nbytes)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(cores=cores, kernels=kernels, results=results), f, indent=1)


if __name__ == "__main__":
    main()
