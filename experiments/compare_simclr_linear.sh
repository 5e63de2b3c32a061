#!/usr/bin/env bash
# DARTS_V2 vs a found cell vs ResNet-18 under identical SimCLR pretraining, then the standard linear probe
# (and the kNN monitor's protocol). Every architecture gets the same data, views, objective, optimiser,
# schedule and seed; only --arch differs.
#
#   experiments/compare_simclr_linear.sh [--quick] [--found GENOTYPE] [--out DIR]
#
# Standard protocol (a GPU; about 3 x 500 epochs): experiments/retrain_cifar10_simclr.toml for each
# architecture (cells: DARTS's 20-cell, C = 36 evaluation network; SimCLR's CIFAR-10 recipe, LARS, batch 512,
# 500 epochs), then `ssnas eval RUN --protocol linear` (linear layer on frozen features of the full training
# set, 100 epochs, test top-1 on all 10,000 test images) and `--protocol knn` (k = 200, t = 0.1).
#
# --quick: a CPU-sized run of the same pipeline, minutes not days: a 1000-image class-balanced CIFAR-10
# subset, 16x16 views, 5 cells of C = 16, 3 epochs of batch 64 with SGD (lr 0.2), evaluation on 2000 test
# images. Its numbers show that the pipeline works and what it costs on a CPU; they are not CIFAR-10 results.
#
# GENOTYPE: a genotype.json or a search run folder (default runs/darts-simclr). With --quick and no genotype
# there, a one-epoch search on the same subset makes one first (a "found" cell in name only at that size).
# Data: $SSNAS_DATA, else ../shared/data beside the checkout, else ./data (see `ssnas search --help`).
# Results: DIR/summary.md (default DIR: runs/compare-simclr, or runs/compare-simclr-quick).
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
FOUND=runs/darts-simclr
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --found) FOUND="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

SSNAS=${SSNAS:-$( [ -x .venv/bin/ssnas ] && echo .venv/bin/ssnas || echo ssnas )}
if [ -z "${SSNAS_DATA:-}" ] && [ -d ../shared/data/cifar10 ]; then export SSNAS_DATA=$(cd ../shared/data && pwd); fi

if [ "$QUICK" = 1 ]; then
  OUT=${OUT:-runs/compare-simclr-quick}
  DATA=(--dataset cifar10 --subset 1000 --view-size 16)
  RETRAIN=(--config experiments/retrain_cifar10_simclr.toml "${DATA[@]}" --layers 5 --init-channels 16
           --epochs 3 --batch-size 64 --optimizer sgd --lr 0.8 --weight-decay 5e-4 --warmup-epochs 0
           --knn-every 0 --device cpu)
  EVAL=(--test-subset 2000 --linear-batch-size 128 --device cpu)
  if [ ! -e "$FOUND" ]; then
    FOUND=$OUT/search
    [ -f "$FOUND/genotype.json" ] || "$SSNAS" search --config experiments/darts_cifar10_simclr.toml "${DATA[@]}" \
        --layers 5 --init-channels 8 --epochs 1 --batch-size 32 --device cpu --out "$FOUND"
  fi
else
  OUT=${OUT:-runs/compare-simclr}
  RETRAIN=(--config experiments/retrain_cifar10_simclr.toml)
  EVAL=()
  if [ ! -e "$FOUND" ]; then
    echo "no found cell at $FOUND: run ssnas search --config experiments/darts_cifar10_simclr.toml --out $FOUND," \
         "or pass --found GENOTYPE" >&2
    exit 2
  fi
fi

declare -A ARCHS=([darts_v2]=DARTS_V2 [found]="$FOUND" [resnet18]=resnet18)
for name in darts_v2 found resnet18; do
  run=$OUT/$name
  if [ ! -f "$run/eval-linear.json" ]; then
    # a killed run continues (one killed before its first checkpoint starts afresh)
    if [ -d "$run" ]; then resume=(--resume); else resume=(); fi
    "$SSNAS" retrain "${RETRAIN[@]}" --arch "${ARCHS[$name]}" --out "$run" "${resume[@]}"
    "$SSNAS" eval "$run" --protocol linear "${EVAL[@]}"
    "$SSNAS" eval "$run" --protocol knn "${EVAL[@]}"
  fi
done

PY=$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )
"$PY" - "$OUT" "$QUICK" <<'EOF'
import json, sys
from pathlib import Path

out, quick = Path(sys.argv[1]), sys.argv[2] == "1"
rows = ["| architecture | params (M) | mult-adds (M) | pretraining (s) | linear top-1 (%) | kNN top-1 (%) |",
        "|---|---|---|---|---|---|"]
for name in ("darts_v2", "found", "resnet18"):
    run = out / name
    net = json.loads((run / "network.json").read_text())
    linear = json.loads((run / "eval-linear.json").read_text())
    knn = json.loads((run / "eval-knn.json").read_text())
    seconds = sum(json.loads(line).get("seconds", 0) for line in (run / "metrics.jsonl").read_text().splitlines()
                  if '"kind": "epoch"' in line)
    rows.append(f"| {name} ({net['arch']}) | {net['params'] / 1e6:.3f} | {net['flops'] / 2e6:.1f} | {seconds:.0f} "
                f"| {linear['top1']:.2f} | {knn['top1']:.2f} |")
note = ("CPU quick mode: 1000-image CIFAR-10 subset, 16x16 views, 5 cells of C = 16, 3 epochs; "
        f"{linear['n_test']} test images. Not a CIFAR-10 result." if quick else
        "Standard protocol: experiments/retrain_cifar10_simclr.toml, linear probe on the full training set.")
text = "\n".join(rows) + f"\n\n{note}\n"
(out / "summary.md").write_text(text)
print(text)
EOF
