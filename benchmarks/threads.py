"""How torch's CPU threads behave on a shared machine: the demo's search step (`ssnas bench search`) under
thread counts and OpenMP wait policies, alone and beside CPU hogs (`python3 -c 'while True: pass'`).

Every setting runs in its own process, because OpenMP reads OMP_NUM_THREADS, OMP_WAIT_POLICY and GOMP_SPINCOUNT
once, when torch loads it. The rounds alternate the settings (A B C, A B C, ...) so that load changes hit them
alike; each hog count is its own block of rounds. Prints one JSON line per run and a median table.

    .venv/bin/python benchmarks/threads.py --hogs 0 1 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> environment of the measured process (anything not named here is removed from its environment). The CLI
# sets OMP_WAIT_POLICY=PASSIVE where neither it nor GOMP_SPINCOUNT is set; libgomp's own default, when neither is
# set, is to spin 300,000 times before sleeping, which GOMP_SPINCOUNT=300000 restores.
SETTINGS = {
    "ssnas's default (threads from free CPUs, passive wait)": {},
    "1 thread": {"OMP_NUM_THREADS": "1"},
    "2 threads, libgomp's default wait (300k spins)": {"OMP_NUM_THREADS": "2", "GOMP_SPINCOUNT": "300000"},
    "2 threads, passive wait": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"},
}
CLEARED = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS", "SSNAS_THREADS")


def _step(args: argparse.Namespace, env: dict[str, str]) -> dict:
    cmd = [sys.executable, "-m", "ssnas.cli", "bench", "search", "--json", "--device", "cpu",
           "--dataset", "fashion-mnist", "--layers", "5", "--init-channels", "8", "--batch-size", "32",
           "--bench-subset", "512", "--steps", str(args.steps), "--warmup", str(args.warmup)]
    base = {k: v for k, v in os.environ.items() if k not in CLEARED}
    try:
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout,
                             env={**base, "PYTHONWARNINGS": "ignore", **env})
    except subprocess.TimeoutExpired:
        return {"s_per_step": float("inf"), "timed_out": True}
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hogs", type=int, nargs="+", default=[0, 1], help="CPU hogs running beside, one block each")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--timeout", type=float, default=600, help="seconds before a run counts as infinitely slow")
    p.add_argument("--only", nargs="*", default=[], help="substrings of the settings to run (default: all)")
    args = p.parse_args()
    settings = {k: v for k, v in SETTINGS.items() if not args.only or any(s in k for s in args.only)}
    print(json.dumps({"load_before": os.getloadavg(), "cpus": os.cpu_count()}), flush=True)
    results: dict[tuple[int, str], list[float]] = {}
    for hogs in args.hogs:
        # each hog in its own session: with the kernel's autogroups, another user's job is scheduled as its own
        # group, not as a member of ours
        procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
                 for _ in range(hogs)]
        try:
            time.sleep(1 if hogs else 0)
            for r in range(args.rounds):
                for name, env in settings.items():
                    row = _step(args, env)
                    results.setdefault((hogs, name), []).append(row["s_per_step"])
                    print(json.dumps({"hogs": hogs, "round": r, "setting": name, "s_per_step": row["s_per_step"],
                                      "threads": row.get("threads"), "load": os.getloadavg()[0]}), flush=True)
        finally:
            for proc in procs:
                proc.kill()
                proc.wait(timeout=10)
    print("\n| hogs | setting | s/step (median) | runs |\n|---|---|---|---|")
    for (hogs, name), values in results.items():
        print(f"| {hogs} | {name} | {statistics.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")


if __name__ == "__main__":
    main()
