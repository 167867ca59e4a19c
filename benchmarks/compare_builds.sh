#!/usr/bin/env bash
# Variants of the code timed side by side on the GPU machine, as docs/BENCHMARKS.md compares them:
# each source tarball (`git archive --format=tar REV > NAME.tar`) is unpacked and measured by
# gpu_round.sh (Vulkan (a) only, with the profile unless PROFILE=OFF), then every build decodes again
# REPS times, the builds taking turns, so that a slow minute of the machine does not favour one.
# Usage (from the repository root, with the .deb bundle beside it):
#   [REPS=2] [PROFILE=ON|OFF] [TESTS=OFF] [TESTS_<name>=ON] [WARMUP=128] [PROMPT=512] [TOKENS=64] \
#     bash benchmarks/compare_builds.sh NAME.tar [NAME.tar ...]
# Writes each build's logs to $OUT/<name> (OUT defaults to ./bench-out) and prints decode and
# prefill tok/s per run, the profile's microseconds per layer and shader, and the SM clock.
set -euo pipefail
[ $# -ge 1 ] || { sed -n 2,10p "$0"; exit 2; }
root=$PWD
out=$(realpath -m "${OUT:-bench-out}")
work=$(mktemp -d)
warmup=${WARMUP:-128}
prompt=${PROMPT:-512}
tokens=${TOKENS:-64}
names=()
for tarball in "$@"; do
  name=$(basename "$tarball" .tar)
  names+=("$name")
  mkdir -p "$work/$name" "$out/$name"
  tar -xf "$tarball" -C "$work/$name"
  cp -r "$root/.devdebs" "$work/$name/"
done

tok_s() { grep -o '"decode_tok_s": [0-9.]*\|"prefill_warm_tok_s": [0-9.]*' "$1" | tr '\n' ' '; }

for name in "${names[@]}"; do
  tests_var="TESTS_$name"
  (cd "$work/$name" && OUT="$out/$name" TESTS=${!tests_var:-${TESTS:-OFF}} VULKAN=ON RAW_IO=OFF DECODE_CPU=OFF \
    STREAM=OFF SLICE=OFF PROFILE=${PROFILE:-ON} WARMUP=$warmup PROMPT=$prompt \
    bash benchmarks/gpu_round.sh 48 "$tokens" > "$out/$name/round.log" 2>&1) || {
    tail -20 "$out/$name/round.log"
    exit 1
  }
  if [ -f "$out/$name/decode_vulkan_profile.log" ]; then
    python3 - "$out/$name/decode_vulkan_profile.log" "$name" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    if line.startswith("{"):
        print(sys.argv[2], "us per layer:", json.loads(line).get("gpu_us_per_layer"))
EOF
  fi
  [ -f "$out/$name/ctest.log" ] && echo "$name tests: $(grep -E 'tests passed|tests failed' "$out/$name/ctest.log")"
  echo "$name round: $(tok_s "$out/$name/round.log")"
done

source "$work/${names[0]}/.devdebs/prelude.sh" "$work/${names[0]}/.devdebs" > /dev/null 2>&1
nvidia-smi --query-gpu=clocks.sm,utilization.gpu --format=csv,noheader -lms 200 > "$out/clocks.csv" 2>/dev/null &
sampler=$!
model=/tmp/moeflux-synth-q4-48
for rep in $(seq 1 "${REPS:-2}"); do
  for name in "${names[@]}"; do
    (cd "$work/$name" && PYTHONPATH=$PWD/build/pypkg python3 benchmarks/bench_decode.py "$model" --budgets all \
      --backend vulkan --device-budget all --warmup "$warmup" --tokens "$tokens" --prompt "$prompt" \
      > "$out/$name/repeat$rep.log" 2>&1)
    echo "$name repeat $rep: $(tok_s "$out/$name/repeat$rep.log")"
  done
done
kill "$sampler" 2>/dev/null || true
echo "SM clock while busy (samples): $(awk -F', ' '$2 + 0 > 50 {print $1}' "$out/clocks.csv" | sort | uniq -c | tr '\n' ' ')"
rm -rf "$work"
