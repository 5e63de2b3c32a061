#!/usr/bin/env bash
# 1 against 2 processes (torchrun, gloo) on this CPU, in alternating rounds: the search step at 5 cells, C=8, on
# CIFAR-10, each process on one thread. Rows: 1 x 32 images, 2 x 16 (the same global batch), 2 x 32 (twice the
# global batch), 2 x 16 with --sync-bn. One JSON line per measurement (ssnas bench search), a comment per round.
#   ROUNDS=2 STEPS=3 benchmarks/processes_cpu.sh > runs/processes_cpu.jsonl
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore
ROUNDS=${ROUNDS:-2}; STEPS=${STEPS:-3}; WARM=${WARM:-1}
common="--json --device cpu --dataset cifar10 --data-root ${SSNAS_DATA:-../shared/data} --layers 5 --init-channels 8 --steps $STEPS --warmup $WARM"
run2="$PY -m torch.distributed.run --standalone --nproc-per-node 2 -m ssnas bench search"
for round in $(seq 1 "$ROUNDS"); do
  for obj in supervised simclr; do
    echo "# round $round $obj $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
    $PY -m ssnas bench search $common --objective $obj --batch-size 32 2>/dev/null | tail -1
    $run2 $common --objective $obj --batch-size 16 2>/dev/null | tail -1
    $run2 $common --objective $obj --batch-size 32 2>/dev/null | tail -1
    $run2 $common --objective $obj --batch-size 16 --sync-bn 2>/dev/null | tail -1
  done
done
echo "# end $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
