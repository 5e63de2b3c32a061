"""Side by side, in one run: NNI 3.0's DARTS (supervised) against ssnas's search step on the same space,
width, batch and data (CIFAR-10), supervised and contrastive.

Each contender runs in its own process (so peak RSS is its own), and the rounds alternate A B C A B C ...
so that load changes on a shared machine hit every contender alike. Prints one JSON line per run and a
summary with median images/s and the ratios against NNI.

    .venv/bin/python benchmarks/compare_search.py --layers 5 --init-channels 8 --batch-size 32 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None) -> dict:
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})})
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--init-channels", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--data-root", default=os.environ.get("SSNAS_DATA", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--skip-nni", action="store_true", help="only the ssnas rows")
    p.add_argument("--skip-pc-darts", action="store_true", help="leave out the PC-DARTS rows")
    p.add_argument("--skip-recompute", action="store_true", help="leave out the --recompute-cells row")
    p.add_argument("--skip-simclr", action="store_true", help="leave out the contrastive rows (more rounds per hour)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads of every contender (default: each its own default, all cores); 1 is steadier "
                        "on a machine other jobs load")
    p.add_argument("--before", default="",
                   help="a checkout of an earlier ssnas (e.g. `git archive REV | tar -x -C DIR`): its supervised step "
                        "joins every round, so a change's effect on the ratio against NNI is measured in one run")
    args = p.parse_args()
    shape = ["--layers", str(args.layers), "--init-channels", str(args.init_channels),
             "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup)]

    def ssnas(objective: str, *extra: str, plain_darts: bool = True) -> list[str]:
        # plain DARTS, the work NNI's DARTS does (ssnas's default strategy is beta-DARTS); an older checkout given
        # by --before may predate --strategy, and ran plain DARTS anyway
        strategy = ["--strategy", "darts"] if plain_darts else []
        return [sys.executable, "-m", "ssnas.cli", "bench", "search", "--json", "--objective", objective, *extra,
                *strategy,
                "--dataset", "cifar10", "--data-root", args.data_root, "--device", "cpu", *shape]

    objectives = ("supervised",) if args.skip_simclr else ("supervised", "simclr")
    contenders = {f"ssnas {obj}": ssnas(obj) for obj in objectives}
    if not args.skip_pc_darts:  # an opt-in mode that changes the search's semantics: its own rows
        for obj in objectives:
            contenders[f"ssnas {obj}, PC-DARTS K=4 + edge norm"] = ssnas(obj, "--partial-channels", "4", "--edge-norm")
    if not args.skip_recompute:  # the memory-saving option: same maths, one more forward per step
        contenders["ssnas supervised, --recompute-cells"] = ssnas("supervised", "--recompute-cells")
    where = {name: ROOT for name in contenders}
    if args.before:
        name = "ssnas supervised, before"
        contenders[name] = ssnas("supervised", plain_darts=False)
        where[name] = Path(args.before).resolve()
    if not args.skip_nni:
        threads = ["--threads", str(args.threads)] if args.threads else []
        contenders = {"nni-darts supervised": [sys.executable, "benchmarks/nni_darts_peer.py", "--data-root",
                                               args.data_root, *shape, *threads], **contenders}
        where["nni-darts supervised"] = ROOT
    env = {"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}
    rows: dict[str, list[dict]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, cmd in contenders.items():
            cwd = where[name]
            row = _run(cmd, cwd, {**env, "PYTHONPATH": str(cwd)} if cwd != ROOT else env)
            row["contender"] = name
            rows[name].append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    for name, runs in rows.items():
        summary[name] = {"images_per_s": statistics.median(r["images_per_s"] for r in runs),
                         "peak_mem_mb": max(r.get("peak_mem_mb", r.get("peak_rss_mb", 0)) for r in runs)}
    if "nni-darts supervised" in summary:
        base = summary["nni-darts supervised"]
        for s in summary.values():
            s["speed_vs_nni"] = round(s["images_per_s"] / base["images_per_s"], 2)
            s["memory_vs_nni"] = round(s["peak_mem_mb"] / base["peak_mem_mb"], 2)
        for name, s in summary.items():  # each round's own ratio: the load of that round hits both alike
            if name == "nni-darts supervised":
                continue
            s["speed_vs_nni_per_round"] = [round(r["images_per_s"] / n["images_per_s"], 2)
                                           for r, n in zip(rows[name], rows["nni-darts supervised"])]
    print(json.dumps({"summary": summary, "config": vars(args)}, indent=2))


if __name__ == "__main__":
    main()
