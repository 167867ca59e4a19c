#!/usr/bin/env bash
# One round of measurements on the GPU machine: build, check, then time the expert store on its disk,
# CPU decode and Vulkan decode and prefill.
# Usage (from the repository root, with the .deb bundle beside it):
#   [DENSE_BITS=8|4] [TESTS=ON|OFF] [VULKAN=ON|OFF] [PROFILE=ON|OFF] [STREAM=ON|OFF] [SLICE=OFF|ON] [SLICE_LAYERS=4] [RAW_IO=ON|OFF] [DECODE_CPU=ON|OFF] [WARMUP=128] [PROMPT=512] \
#     bash benchmarks/gpu_round.sh [LAYERS] [TOKENS]
# Writes logs to $OUT (or ./bench-out) and prints the tables last.
set -euo pipefail
layers=${1:-48}
tokens=${2:-32}
out=${OUT:-bench-out}
mkdir -p "$out"
source .devdebs/prelude.sh .devdebs > "$out/prelude.log" 2>&1
# The distribution's compiler: a toolchain that links libstdc++ statically would give the extension a
# second libstdc++ beside NumPy's.
export CC=/usr/bin/gcc CXX=/usr/bin/g++

echo "== build" | tee "$out/build.log"
cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=$CXX -DMOEFLUX_BUILD_TESTS=${TESTS:-ON} \
  -DMOEFLUX_VULKAN=${VULKAN:-ON} >> "$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
cmake --build build/gpu -j16 >> "$out/build.log" 2>&1 || { grep -m5 -A5 error "$out/build.log"; exit 1; }
if [ "${TESTS:-ON}" = ON ]; then
  ctest --test-dir build/gpu -j8 --output-on-failure > "$out/ctest.log" 2>&1 || { tail -30 "$out/ctest.log"; exit 1; }
  tail -3 "$out/ctest.log"
fi
mkdir -p build/pypkg/moeflux
cp -r python/moeflux/. build/pypkg/moeflux/
cp build/gpu/cpp/_core*.so build/pypkg/moeflux/
export PYTHONPATH=$PWD/build/pypkg

dense_bits=${DENSE_BITS:-8}  # the dense tensors' bits (experts: 4)
model=/tmp/moeflux-synth-q4-$layers$([ "$dense_bits" = 8 ] || echo "-d$dense_bits")
if [ ! -f "$model/moeflux.json" ]; then
  echo "== writing the synthetic Qwen3-30B-A3B-shaped model ($layers layers, 4-bit experts, $dense_bits-bit dense)"
  /usr/bin/time -f "%e s" python3 benchmarks/synthetic_model.py "$model" --layers "$layers" --expert-bits 4 --dense-bits "$dense_bits" \
    | tee "$out/synth.log"
fi
stride=$(python3 -c "import json;print(json.load(open('$model/moeflux.json'))['experts']['layers'][0]['stride'])")
lfile="$model/experts/layer_000.bin"

if [ "${RAW_IO:-ON}" = ON ]; then
  echo "== raw io_uring reads (record size $stride bytes)"
  for qd in 8 64; do
    for mode in steady batch; do
      sync; echo 3 > /proc/sys/vm/drop_caches || true
      ./build/gpu/benchmarks/io_uring_bench "$lfile" "$stride" "$qd" 4 "$mode" | tee -a "$out/io_uring_bench.jsonl"
    done
  done
fi

if [ "${DECODE_CPU:-ON}" = ON ]; then
  echo "== decode on the CPU, cold page cache"
  python3 benchmarks/bench_decode.py "$model" --budgets ${BUDGETS:-all,0.5,0.25,min} --tokens "$tokens" --cold | tee "$out/decode.log"
fi
if [ "${VULKAN:-ON}" = ON ]; then
  echo "== the device's copy bandwidth"
  ./build/gpu/benchmarks/vulkan_copy_bench 1024 20 | tee "$out/copy_bandwidth.json"
  # (a) every expert resident on the device (loaded at open); (b) a quarter of them, from a cold page
  # cache, with the host tier holding every expert (after the first read) or only the minimum.
  echo "== Vulkan (a): device budget all, ${WARMUP:-128} warm-up steps, prompt ${PROMPT:-512}"
  python3 benchmarks/bench_decode.py "$model" --budgets all --backend vulkan --device-budget all \
    --warmup ${WARMUP:-128} --tokens "$tokens" --prompt ${PROMPT:-512} | tee -a "$out/decode_vulkan.log"
  if [ "${PROFILE:-ON}" = ON ]; then
    echo "== Vulkan (a) profiled: GPU time per shader"
    python3 benchmarks/bench_decode.py "$model" --budgets all --backend vulkan --device-budget all --profile \
      --warmup 32 --tokens 32 --prompt ${PROMPT:-512} | tee -a "$out/decode_vulkan_profile.log"
  fi
  if [ "${STREAM:-ON}" = ON ]; then
    echo "== Vulkan (b): device budget 0.25, cold page cache, host budget all and min"
    python3 benchmarks/bench_decode.py "$model" --budgets all,min --backend vulkan --device-budget 0.25 --cold \
      --warmup ${WARMUP:-128} --tokens "$tokens" --prompt ${PROMPT:-512} | tee -a "$out/decode_vulkan.log"
  fi
fi
if [ "${SLICE:-OFF}" = ON ]; then
  # Qwen3.5-397B-A17B layer slices (the real 3:1 mix): resident on the device, and streaming with a
  # quarter of the experts on the device and the host tier at its minimum, from a cold page cache.
  for bits in 4 2; do
    slice=/tmp/moeflux-synth-q35-$bits-${SLICE_LAYERS:-4}
    if [ ! -f "$slice/moeflux.json" ]; then
      echo "== writing a ${SLICE_LAYERS:-4}-layer Qwen3.5-397B-A17B slice ($bits-bit experts, 8-bit dense)"
      python3 benchmarks/synthetic_model.py "$slice" --shape qwen3.5-397b-a17b --layers ${SLICE_LAYERS:-4} \
        --expert-bits $bits --dense-bits 8 > "$out/synth-q35-$bits.log"
    fi
    echo "== Qwen3.5-397B slice, $bits-bit experts: resident, then streaming"
    python3 benchmarks/bench_decode.py "$slice" --budgets all --backend vulkan --device-budget all \
      --warmup 16 --tokens 32 --prompt 128 | tee -a "$out/slice_vulkan.log"
    python3 benchmarks/bench_decode.py "$slice" --budgets min --backend vulkan --device-budget 0.25 --cold \
      --warmup 8 --tokens 16 --prompt 16 | tee -a "$out/slice_vulkan.log"
    rm -rf "$slice"  # the disk holds one slice at a time beside the 30B-shaped model
  done
fi
