#!/usr/bin/env bash
# ConRec against SimCLR (and SimCLR + attention pooling, the paper's other baseline) under identical pretraining:
# the same network, data, views, optimiser, schedule and seed; only the objective differs. Then the linear probe
# and the kNN protocol.
#
#   experiments/compare_conrec.sh [--quick [--epochs N] [--subset N]] [--seed N] [--out DIR]
#
# Standard protocol (a GPU): experiments/retrain_cifar10_simclr.toml (DARTS_V2's network, SimCLR's CIFAR-10
# recipe, 500 epochs) with --objective simclr, conrec, and conrec without reconstruction and corruption (SimCLR +
# attention pooling), then `ssnas eval RUN --protocol linear` and `--protocol knn`.
#
# --quick: a CPU-sized run: a class-balanced 4000-image CIFAR-10 subset (--subset), a small NAS-Bench-201 network
# (1 cell per stage, C = 16), 12 epochs (--epochs) of batch 128 with SGD, the probe trained on the subset and tested
# on 2000 test images; about 15 minutes per objective on one loaded core, 6 with --subset 2000 --epochs 8 (what
# BENCHMARKS.md ran). CIFAR-10 is not a fine-grained dataset, which is where the paper reports ConRec's gains. Its
# numbers show the mechanics and their cost; they are not CIFAR-10 results. Runs in the order SimCLR, ConRec,
# SimCLR + attention; a run already in DIR is continued or reused, and the summary lists the finished ones.
# Data: $SSNAS_DATA, else ../shared/data beside the checkout, else ./data. Results: DIR/summary.md
# (default DIR: runs/compare-conrec, or runs/compare-conrec-quick).
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
OUT=""
EPOCHS=12
SUBSET=4000
SEED=0
. experiments/_quick_args.sh
parse_quick_args 19 "$@"

RETRAIN=(--config experiments/retrain_cifar10_simclr.toml --seed "$SEED")
EVAL=(--seed "$SEED")
if [ "$QUICK" = 1 ]; then
  OUT=${OUT:-runs/compare-conrec-quick}
  RETRAIN+=(--subset "$SUBSET" --arch '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|'
            --layers 1 --init-channels 16 --epochs "$EPOCHS" --warmup-epochs 1 --batch-size 128 --optimizer sgd --lr 0.12
            --weight-decay 5e-4 --knn-every 0 --device cpu --no-progress)
  EVAL+=(--subset "$SUBSET" --test-subset 2000 --linear-batch-size 256 --device cpu --no-progress)
else
  OUT=${OUT:-runs/compare-conrec}
fi

declare -A OBJECTIVE=([simclr]="--objective simclr" [simclr_attention]="--objective conrec --set objective.reconstruction_weight=0 --set objective.corruption=false"
                      [conrec]="--objective conrec")
for name in simclr conrec simclr_attention; do
  run=$OUT/$name
  if [ ! -f "$run/eval-linear.json" ]; then
    # shellcheck disable=SC2086
    # --resume starts a run afresh, continues one killed before it finished, or finds it done
    "$SSNAS" retrain "${RETRAIN[@]}" ${OBJECTIVE[$name]} --out "$run" --resume
    "$SSNAS" eval "$run" --protocol linear "${EVAL[@]}"
    "$SSNAS" eval "$run" --protocol knn "${EVAL[@]}"
  fi
done

PY=$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )
"$PY" - "$OUT" "$QUICK" "$EPOCHS" "$SUBSET" <<'PYEOF'
import json, sys
from pathlib import Path

out, quick, epochs, subset = Path(sys.argv[1]), sys.argv[2] == "1", sys.argv[3], sys.argv[4]
rows = ["| objective | pretraining (s) | final loss terms | linear top-1 (%) | kNN top-1 (%) |", "|---|---|---|---|---|"]
names = {"simclr": "SimCLR", "simclr_attention": "SimCLR + attention pooling (conrec, no reconstruction/corruption)",
         "conrec": "ConRec (reconstruction x 100 + attention pooling)"}
for name, label in names.items():
    run = out / name
    if not (run / "eval-knn.json").is_file():
        continue  # not run (yet)
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    seconds = sum(r.get("seconds", 0) for r in metrics if r["kind"] == "epoch")
    last = [r for r in metrics if r["kind"] == "step"][-1]
    terms = ", ".join(f"{k} {last[k]:.3f}" for k in ("nt_xent", "reconstruction") if k in last)
    linear = json.loads((run / "eval-linear.json").read_text())
    knn = json.loads((run / "eval-knn.json").read_text())
    rows.append(f"| {label} | {seconds:.0f} | {terms} | {linear['top1']:.2f} | {knn['top1']:.2f} |")
note = (f"CPU-sized: {subset}-image CIFAR-10 subset, NB201 network of 1 cell per stage, C = 16, {epochs} epochs, "
        f"{linear['n_test']} test images. Not a CIFAR-10 result." if quick else
        "Standard protocol: experiments/retrain_cifar10_simclr.toml, linear probe on the full training set.")
text = "\n".join(rows) + f"\n\n{note}\n"
(out / "summary.md").write_text(text)
print(text)
PYEOF
