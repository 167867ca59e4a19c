#!/usr/bin/env bash
# Installs what moeflux needs on Debian/Ubuntu: system packages (apt), a virtual environment in
# .venv, and moeflux itself built from this checkout. With --test, also the test dependencies.
# Safe to run again: it installs only what is missing and rebuilds incrementally.
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1

apt_packages=(g++ make pkg-config git python3-venv nlohmann-json3-dev libopenblas-dev liburing-dev
              libgtest-dev libvulkan-dev glslc mesa-vulkan-drivers vulkan-validationlayers)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "moeflux: installing system packages: ${missing[*]}"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
"${pip[@]}" "scikit-build-core>=0.10" "pybind11>=2.12" "cmake>=3.24" ninja numpy tqdm tokenizers safetensors jinja2
if [ $with_tests -eq 1 ]; then
  # The CPU build of torch (the reference in tests); a plain "torch" would pull a CUDA build.
  "${pip[@]}" "torch==2.13.0" "transformers>=5.0" pytest nbclient nbformat ipykernel
fi

werror=OFF; [ "${CI:-}" = "true" ] && werror=ON
echo "moeflux: building (first build takes a few minutes)"
"${pip[@]}" --no-build-isolation --no-deps \
  -Cbuild-dir=build/py \
  -Ccmake.define.MOEFLUX_BUILD_TESTS=$([ $with_tests -eq 1 ] && echo ON || echo OFF) \
  -Ccmake.define.MOEFLUX_WERROR=$werror \
  .
