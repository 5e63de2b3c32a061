"""Search quality on NAS-Bench-201, measured: strategies x objectives x seeds, each a real `ssnas search` run with
`--benchmark`, then one table and one picture.

    python experiments/nb201_quality.py --benchmark TABLE.csv --data-root $SSNAS_DATA --out runs/quality \\
        --strategies darts,beta-darts,darts-minus,drnas,pt,tenas --objectives simclr,clsa,byol,supervised \\
        --seeds 0,1,2 --jobs 2

Every run starts from `--config` (default: experiments/nb201_cifar10_simclr.toml, the CPU-sized search) with the
strategy, objective and seed changed, and writes its own run folder OUT/<strategy>/<objective>/seed<k>. A run that
already finished is not run again, and a killed one resumes, so the command can be repeated until the grid is full.
`--report-only` rebuilds the outputs from the run folders:
- OUT/quality.json: every run (its true accuracy and rank per epoch, wall time) and the summary per cell of the grid;
- OUT/quality.md: the table (over the finished seeds: mean +- std of the final cell's true CIFAR-10 accuracy, the
  worst seed, the best and worst rank, how many reach the top 1%, mean wall time), every seed listed, not only the
  best, unfinished ones marked with the epoch they reached;
- OUT/trajectory.png: the true accuracy of the cell derived after each epoch, one colour per strategy (thin lines:
  seeds; thick: their mean).
The table is read by the search's logger only (`--benchmark`); it never decides anything.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLUMN = "cifar10_test"
TOP1 = 93.775  # NAS-Bench-201 CIFAR-10: the 156th best of 15,625 cells (the top 1% starts here)
OPTIMUM = 94.37  # the best cell's CIFAR-10 test accuracy


def run_folder(out: Path, strategy: str, objective: str, seed: int) -> Path:
    return out / strategy / objective / f"seed{seed}"


def finished(folder: Path) -> bool:
    """The search decided: its last epoch is done (or a training-free strategy wrote its cell)."""
    path = folder / "genotype.json"
    if not path.is_file():
        return False
    meta = json.loads(path.read_text()).get("meta", {})
    return bool(meta.get("finished", meta.get("epoch") == meta.get("epochs")))


def command(args: argparse.Namespace, strategy: str, objective: str, seed: int, folder: Path) -> list[str]:
    cmd = [sys.executable, "-m", "ssnas", "search", "--config", str(args.config), "--strategy", strategy,
           "--objective", objective, "--seed", str(seed), "--benchmark", str(args.benchmark),
           "--data-root", str(args.data_root), "--out", str(folder), "--no-progress"]
    if folder.is_dir():  # a killed run continues; one killed before its first checkpoint starts afresh
        cmd.append("--resume")
    for item in args.set or []:
        cmd += ["--set", item]
    return cmd


def run_one(args: argparse.Namespace, strategy: str, objective: str, seed: int) -> str:
    folder = run_folder(args.out, strategy, objective, seed)
    if finished(folder):
        return f"{folder}: done before"
    folder.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    started = time.time()
    with (folder.parent / f"seed{seed}.log").open("a") as log:
        code = subprocess.run(command(args, strategy, objective, seed, folder), cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT).returncode
    return f"{folder}: exit {code} after {time.time() - started:.0f} s"


def read_run(folder: Path) -> dict | None:
    """The trajectory of one run, finished or not: per epoch the true accuracy and rank of the derived cell."""
    path = folder / "genotypes.jsonl"
    if not path.is_file() or not path.read_text().strip():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    epochs = [m for m in metrics if m.get("kind") == "epoch"]
    strategy_rows = [m for m in metrics if m.get("kind") == "strategy"]
    seconds = sum(m.get("seconds", 0.0) for m in epochs) + sum(m.get("seconds", 0.0) for m in strategy_rows)
    meta = json.loads((folder / "genotype.json").read_text()).get("meta", {})
    truth = rows[-1].get("truth", {})
    return {"arch": rows[-1]["genotype"].get("arch"), "finished": finished(folder),
            "epochs_done": meta.get("epoch"), "epochs": meta.get("epochs"),
            "true": [r.get("truth", {}).get(f"true_{COLUMN}") for r in rows],
            "rank": [r.get("truth", {}).get(f"rank_{COLUMN}") for r in rows],
            "final_true": truth.get(f"true_{COLUMN}"), "final_rank": truth.get(f"rank_{COLUMN}"),
            "cifar100": truth.get("true_cifar100_test"), "imagenet16": truth.get("true_imagenet16_test"),
            "seconds": round(seconds, 1)}


def summarise(runs: dict[int, dict]) -> dict:
    """Mean, spread and worst over the finished runs only (an unfinished run is listed, never averaged)."""
    done = [r for r in runs.values() if r["finished"] and r["final_true"] is not None]
    summary = {"seeds": len(done), "unfinished": len(runs) - len(done)}
    if not done:
        return summary
    finals = [r["final_true"] for r in done]
    return {**summary, "mean": statistics.fmean(finals), "std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
            "worst": min(finals), "best": max(finals), "best_rank": min(r["final_rank"] for r in done),
            "worst_rank": max(r["final_rank"] for r in done), "top1": sum(f >= TOP1 for f in finals),
            "minutes": statistics.fmean(r["seconds"] for r in done) / 60}


def seed_entry(seed: int, run: dict) -> str:
    value = "?" if run["final_true"] is None else f"{run['final_true']:.2f}"
    if run["finished"]:
        early = run["epochs_done"] is not None and run["epochs"] is not None and run["epochs_done"] < run["epochs"]
        return f"{seed}: {value}" + (f" (stopped, epoch {run['epochs_done']}/{run['epochs']})" if early else "")
    return f"{seed}: {value} (unfinished, epoch {run['epochs_done']}/{run['epochs']})"


def report(args: argparse.Namespace) -> None:
    grid: dict[str, dict[str, dict[int, dict]]] = {}
    for strategy in args.strategies:
        for objective in args.objectives:
            for seed in args.seeds:
                run = read_run(run_folder(args.out, strategy, objective, seed))
                if run is not None:
                    grid.setdefault(strategy, {}).setdefault(objective, {})[seed] = run
    summary = {s: {o: summarise(r) for o, r in objs.items()} for s, objs in grid.items()}
    (args.out / "quality.json").write_text(json.dumps({"runs": grid, "summary": summary}, indent=1) + "\n")
    lines = ["| strategy | objective | finished seeds | CIFAR-10 mean ± std | worst | top-1% seeds | "
             "ranks (best-worst) | minutes/run | every seed |", "|---|---|---|---|---|---|---|---|---|"]
    for strategy, objs in summary.items():
        for objective, s in objs.items():
            seeds = ", ".join(seed_entry(k, r) for k, r in sorted(grid[strategy][objective].items()))
            if "mean" in s:
                figures = (f"{s['mean']:.2f} ± {s['std']:.2f} | {s['worst']:.2f} | {s['top1']}/{s['seeds']} | "
                           f"{s['best_rank']}-{s['worst_rank']} | {s['minutes']:.0f}")
            else:
                figures = "- | - | - | - | -"
            lines.append(f"| {strategy} | {objective} | {s['seeds']} | {figures} | {seeds} |")
    (args.out / "quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(grid, args.out / "trajectory.png")


def plot(grid: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    objectives = sorted({o for objs in grid.values() for o in objs})
    if not objectives:
        return
    fig, axes = plt.subplots(1, len(objectives), figsize=(5.5 * len(objectives), 4.2), squeeze=False, sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    settled_labelled = False
    for ax, objective in zip(axes[0], objectives):
        for i, (strategy, objs) in enumerate(grid.items()):
            runs = objs.get(objective, {})
            curves = [[v if v is not None else math.nan for v in r["true"]] for r in runs.values()]
            if not curves:
                continue
            colour = colours[i % len(colours)]
            same_length = len({len(c) for c in curves}) == 1
            for k, (seed, curve, run) in enumerate(zip(runs, curves, runs.values())):  # every seed, unfinished
                ax.plot(range(1, len(curve) + 1), curve, color=colour, alpha=0.35, linewidth=0.9, marker=".",
                        label=None if same_length or k else f"{strategy} ({len(curves)} seeds)")
                if curve:  # which seed ended where: a small label beside its last point
                    ax.annotate(f"seed {seed}", (len(curve), curve[-1]), textcoords="offset points", xytext=(4, -3),
                                fontsize=7, color=colour)
                if run["finished"] and curve and (run["epochs_done"] or 0) < (run["epochs"] or 0):
                    ax.plot([len(curve)], [curve[-1]], color=colour, marker="s", markersize=6, linestyle="none",
                            label="stopped early (settled or decided)" if not settled_labelled else None)
                    settled_labelled = True
            if same_length:  # the mean over the seeds, where every seed ran the same epochs (no early stops)
                mean = [statistics.fmean(c[e] for c in curves) for e in range(len(curves[0]))]
                ax.plot(range(1, len(mean) + 1), mean, color=colour, linewidth=2.2,
                        label=f"{strategy} ({len(curves)} seeds, mean)")
        ax.axhline(TOP1, color="grey", linestyle="--", linewidth=1)
        ax.text(1, TOP1 + 0.02, "top 1%", color="grey", fontsize=8)
        ax.axhline(OPTIMUM, color="grey", linestyle=":", linewidth=1)
        ax.text(1, OPTIMUM + 0.02, "optimum", color="grey", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"objective: {objective}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("true CIFAR-10 accuracy of the derived cell (%)")
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    print(f"picture: {path}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--benchmark", type=Path, required=True, help="NAS-Bench-201 results table (CSV, 'arch' column)")
    p.add_argument("--data-root", type=Path, default=Path(os.environ.get("SSNAS_DATA", "data")))
    p.add_argument("--out", type=Path, default=Path("runs/quality"))
    p.add_argument("--config", type=Path, default=ROOT / "experiments" / "nb201_cifar10_simclr.toml")
    p.add_argument("--strategies", type=lambda s: s.split(","), default=["darts", "beta-darts", "darts-minus",
                                                                         "drnas", "pt", "tenas"])
    p.add_argument("--objectives", type=lambda s: s.split(","), default=["simclr"])
    p.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (each with --threads threads)")
    p.add_argument("--threads", type=int, default=2, help="torch threads per run (the machine's cores / --jobs)")
    p.add_argument("--set", action="append", help="a KEY=VALUE override for every run (repeatable)")
    p.add_argument("--report-only", action="store_true", help="only rebuild the table and the picture")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        grid = [(s, o, k) for k in args.seeds for s in args.strategies for o in args.objectives]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for line in pool.map(lambda job: run_one(args, *job), grid):
                print(line, flush=True)
    report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
