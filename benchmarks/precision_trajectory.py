"""Does bf16 autocast keep a search's genotype trajectory within the noise of float32? (`--precision`'s default)

Runs a small search several times in this process and compares the genotype after every epoch between runs:
- rounding noise: float32 on the speed route against float32 on the textbook route, same seed (the same maths,
  only the order of float32 additions differs);
- bf16 against float32 (textbook route, as bf16 runs), same seed;
- seed noise: float32 with seed 0 against seed 1.
Agreement = the share of the genotype's (cell, node, input, op) choices two runs have in common, per epoch. bf16 is
"within noise" when its agreement with float32 is no lower than float32's with itself across seeds.

    .venv/bin/python benchmarks/precision_trajectory.py --device cpu --epochs 6 --out runs/precision.json
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _choices(genotype: dict) -> set:
    return {(cell, i, tuple(edge)) for cell in ("normal", "reduce") for i, edge in enumerate(genotype.get(cell, []))}


def agreement(a: list[dict], b: list[dict]) -> list[float]:
    return [round(len(_choices(x) & _choices(y)) / max(len(_choices(x)), 1), 3) for x, y in zip(a, b)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--steps", type=int, default=4, help="steps per epoch")
    p.add_argument("--data-root", default=os.environ.get("SSNAS_DATA", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--out", default="runs/precision_trajectory.json")
    args = p.parse_args()

    import torch

    from ssnas.config import apply_overrides
    from ssnas.search import SearchConfig, run_search

    torch.set_num_threads(1)
    cifar = (Path(args.data_root) / "cifar10" / "train").is_dir()
    base = {"data.dataset": "cifar10" if cifar else "fashion-mnist", "data.data_root": args.data_root,
            "data.subset": 1024, "supernet.layers": 3, "supernet.init_channels": 8, "optim.epochs": args.epochs,
            "optim.batch_size": 16, "optim.steps_per_epoch": args.steps, "objective.proj_dim": 32,
            "augment.size": 16, "run.device": args.device, "run.progress": False, "run.tensorboard": False}
    runs = {"fp32 fast s0": ("fast", "fp32", 0), "fp32 textbook s0": ("textbook", "fp32", 0),
            "bf16 s0": ("textbook", "bf16", 0), "fp32 textbook s1": ("textbook", "fp32", 1),
            "bf16 s1": ("textbook", "bf16", 1)}
    history, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (kernels, precision, seed) in runs.items():
            cfg = apply_overrides(SearchConfig(), {**base, "run.kernels": kernels, "optim.precision": precision,
                                                   "run.seed": seed, "run.out": str(Path(tmp) / name.replace(" ", "-"))})
            started = time.perf_counter()
            result = run_search(cfg)
            seconds[name] = round(time.perf_counter() - started, 1)
            history[name] = [h["genotype"] for h in result.history]
            print(f"{name}: {seconds[name]} s", flush=True)
    comparisons = {
        "rounding noise (fp32 fast vs fp32 textbook, seed 0)": agreement(history["fp32 fast s0"], history["fp32 textbook s0"]),
        "bf16 vs fp32, seed 0": agreement(history["bf16 s0"], history["fp32 textbook s0"]),
        "bf16 vs fp32, seed 1": agreement(history["bf16 s1"], history["fp32 textbook s1"]),
        "seed noise (fp32 seed 0 vs seed 1)": agreement(history["fp32 textbook s0"], history["fp32 textbook s1"]),
        "seed noise (bf16 seed 0 vs seed 1)": agreement(history["bf16 s0"], history["bf16 s1"]),
    }
    result = {"what": "benchmarks/precision_trajectory.py", "config": base, "seconds": seconds,
              "agreement_per_epoch": comparisons, "genotypes": history,
              "load_average": list(os.getloadavg())}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for k, v in comparisons.items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
