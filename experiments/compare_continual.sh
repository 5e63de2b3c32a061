#!/usr/bin/env bash
# Continual (class-incremental) SimCLR on CIFAR-10, 5 steps of 2 classes: CCL (exemplars + similarity
# distillation + extra queue) against plain sequential training, random replay and joint training (the upper
# bound), all with the same network, views, objective, optimiser, per-step schedule and seed.
#
#   experiments/compare_continual.sh [--quick [--epochs N] [--subset N]] [--seed N] [--out DIR]
#
# Standard protocol (a GPU): experiments/retrain_cifar10_continual.toml (ResNet-18, 200 epochs per step, batch 512,
# the full training set) with --continual-method ccl, replay, finetune and joint.
#
# --quick: a CPU-sized run, about an hour on one thread of a loaded 2-core machine (CCL ~18 min, plain sequential
# and replay ~15 min each, joint ~11 min): a class-balanced 4000-image CIFAR-10 subset (--subset; 800 images per
# step), a small NAS-Bench-201 network (1 cell per stage, C = 16), 8 epochs (--epochs) per step of batch 128 with
# SGD, evaluation on 2000 test images. Its numbers show the mechanics and their cost; they are not CIFAR-10
# results. A method whose DIR/METHOD/continual.json exists is not run again.
# Data: $SSNAS_DATA, else ../shared/data beside the checkout, else ./data. Results: DIR/summary.md
# (default DIR: runs/compare-continual, or runs/compare-continual-quick).
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
OUT=""
EPOCHS=8
SUBSET=4000
SEED=0
. experiments/_quick_args.sh
parse_quick_args 17 "$@"

RETRAIN=(--config experiments/retrain_cifar10_continual.toml --seed "$SEED")
if [ "$QUICK" = 1 ]; then
  OUT=${OUT:-runs/compare-continual-quick}
  RETRAIN+=(--subset "$SUBSET" --test-subset 2000 --arch '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|'
            --layers 1 --init-channels 16 --epochs "$EPOCHS" --warmup-epochs 1 --batch-size 128 --optimizer sgd
            --lr 0.12 --weight-decay 5e-4 --device cpu --no-progress)
else
  OUT=${OUT:-runs/compare-continual}
fi

for method in ccl finetune replay joint; do
  run=$OUT/$method
  # a continual run cannot resume: one killed before it finished starts afresh (--force clears its files)
  [ -f "$run/continual.json" ] || "$SSNAS" retrain "${RETRAIN[@]}" --continual-method "$method" --out "$run" --force
done

PY=$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )
"$PY" - "$OUT" "$QUICK" "$EPOCHS" "$SUBSET" <<'EOF'
import json, sys
from pathlib import Path

out, quick, epochs, subset = Path(sys.argv[1]), sys.argv[2] == "1", sys.argv[3], sys.argv[4]
records = {m: json.loads((out / m / "continual.json").read_text()) for m in ("ccl", "replay", "finetune", "joint")}
names = {"ccl": "CCL (exemplars + distillation + extra queue)", "replay": "random replay",
         "finetune": "plain sequential", "joint": "joint (upper bound)"}
lines = []
for probe in ("knn", "linear"):
    steps = len(records["ccl"]["per_step"])
    head = " | ".join(f"after step {k + 1}" for k in range(steps))
    lines += [f"**{probe}**: accuracy on all classes seen so far, then the final average accuracy A and forgetting F "
              "(percent)", "", f"| method | {head} | A | F | wall time, training + scoring (s) |", "|---|" + "---|" * (steps + 3)]
    for m, r in records.items():
        accs = [f"{100 * row[probe]['accuracy']:.1f}" for row in r["per_step"]]
        accs += [""] * (steps - len(accs)) if m != "joint" else []
        if m == "joint":
            accs = [""] * (steps - 1) + accs
        seconds = sum(row["seconds"] for row in r["per_step"])
        lines.append(f"| {names[m]} | {' | '.join(accs)} | {100 * r[probe]['average_accuracy'][-1]:.1f} | "
                     f"{100 * r[probe]['forgetting'][-1]:.1f} | {seconds:.0f} |")
    lines.append("")
    lines += ["per-step-task accuracy after the last step (a[K][j], percent):", "",
              "| method | " + " | ".join(f"task {j + 1}" for j in range(steps)) + " |", "|---|" + "---|" * steps]
    for m, r in records.items():
        lines.append(f"| {names[m]} | " + " | ".join(f"{100 * a:.1f}" for a in r[probe]["accuracy_matrix"][-1]) + " |")
    lines.append("")
order = ", ".join(records["ccl"]["class_order"])
note = (f"CPU-sized: {subset}-image CIFAR-10 subset, 5 class-incremental steps ({order}), NB201 network of 1 cell per "
        f"stage, C = 16, {epochs} epochs per step, kNN/linear on 2000 test images. Not a CIFAR-10 result." if quick else
        f"Standard protocol: experiments/retrain_cifar10_continual.toml, class order {order}.")
text = "\n".join(lines) + f"\n{note}\n"
(out / "summary.md").write_text(text)
print(text)
EOF
