#!/usr/bin/env bash
# Every GPU figure of BENCHMARKS.md in one run, as JSON (benchmarks/gpu_figures.py says what and how):
#   benchmarks/gpu.sh [--out runs/gpu_figures.json] [--nproc N] [--data-root DIR]   # on a GPU machine, < 10 min
#   benchmarks/gpu.sh --device cpu --tiny --out /tmp/gpu.json                       # anywhere: checks the script
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
exec "$PY" benchmarks/gpu_figures.py "$@"
