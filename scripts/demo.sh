#!/usr/bin/env bash
# The main job on a fresh machine: install everything, then run the demo on the built-in model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/moeflux demo "$@"
