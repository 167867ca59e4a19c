#!/usr/bin/env bash
# Every test on a fresh machine: install everything (with test dependencies), then the C++ tests
# (CTest over GoogleTest) and the Python tests (pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
# Vulkan runs under the Khronos validation layer (with synchronization validation); any message
# fails the test that caused it.
export MOEFLUX_VULKAN_VALIDATION=1 MOEFLUX_REQUIRE_VULKAN=1
echo "== C++ tests (ctest)"
.venv/bin/ctest --test-dir build/py --output-on-failure -j2
echo "== Python tests (pytest)"
.venv/bin/python -m pytest -q "$@"
