"""Every GPU figure of BENCHMARKS.md in one run, written as one JSON file: what benchmarks/gpu.sh runs.

At the standard DARTS search configuration (8 cells, C = 16, batch 64 per process, CIFAR-10), supervised and SimCLR:
- ssnas's search step on one GPU: the kernel routes (`--kernels textbook`, cuDNN's, against `--kernels fast`, the
  CPU-tuned exact route) in float32, and bf16 autocast (`--precision bf16`) against float32: images/s, s/step and
  peak memory (CUDA max allocated);
- NNI 3.0's own DARTS on the same space, width and batch (benchmarks/nni_darts_peer.py; supervised: NNI's DARTS has
  no contrastive objective);
- the same step on every GPU with torchrun (batch 64 per process), and the scaling efficiency against one GPU;
- the projected time of a 50-epoch search (DARTS: 25,000 images in the weight half) on one GPU and on all of them.

Each measurement is its own process with its own time limit; one that fails is a row with its error, and the run
goes on. `--device cpu --tiny` runs the same at toy sizes on the CPU with 2 gloo processes (tests/test_gpu_bench.py
keeps it working); CPU figures are not GPU figures and the JSON says so.

    benchmarks/gpu.sh --out runs/gpu.json                      # on a GPU machine: about 5 minutes on one H200
    benchmarks/gpu.sh --device cpu --tiny --out /tmp/gpu.json  # anywhere
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEARCH_IMAGES = 25_000  # DARTS's CIFAR-10 search: the weight half of the 50,000 training images (App. A.1.1)
SEARCH_EPOCHS = 50


def _run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> dict:
    """The last JSON line a command prints, or {"error": ...}; never waits past `timeout`."""
    started = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})})
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "command": " ".join(cmd)}
    rows = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not rows:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"exit {done.returncode}: {tail[0][:300]}", "command": " ".join(cmd)}
    row = json.loads(rows[-1])
    row["wall_s"] = round(time.monotonic() - started, 1)
    return row


def _environment(device: str) -> dict:
    import torch

    env = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
           "device": device, "load_average": list(os.getloadavg())}
    if device == "cuda" and torch.cuda.is_available():
        env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        env["cuda"] = torch.version.cuda
        env["bf16_supported"] = torch.cuda.is_bf16_supported()
    return env


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--tiny", action="store_true", help="toy sizes (3 cells, C=4, batch 8, 2 steps): checks the script")
    p.add_argument("--nproc", type=int, default=0, help="processes for the torchrun rows (default: every GPU; CPU: 2)")
    p.add_argument("--data-root", default=os.environ.get("SSNAS_DATA", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--out", default="runs/gpu_figures.json")
    p.add_argument("--timeout", type=float, default=0, help="seconds per measurement (default: 150, tiny: 600)")
    args = p.parse_args()

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu.sh: no CUDA GPU is visible; pass --device cpu (with --tiny) to check the script")
    nproc = args.nproc or (torch.cuda.device_count() if args.device == "cuda" else 2)
    timeout = args.timeout or (600 if args.tiny else 150)
    cifar = (Path(args.data_root) / "cifar10" / "train").is_dir()
    if args.tiny:
        shape = {"layers": 3, "init_channels": 4, "batch_size": 8, "steps": 2, "warmup": 1}
    else:
        shape = {"layers": 8, "init_channels": 16, "batch_size": 64, "steps": 10, "warmup": 3}
    data = (["--dataset", "cifar10", "--data-root", args.data_root] if cifar
            else ["--dataset", "fashion-mnist", "--data-root", "/nonexistent-root", "--view-size", "16"])
    common = ["--json", "--device", args.device, "--layers", str(shape["layers"]),
              "--init-channels", str(shape["init_channels"]), "--batch-size", str(shape["batch_size"]),
              "--steps", str(shape["steps"]), "--warmup", str(shape["warmup"]), "--bench-subset", "2048", *data]
    bench = [sys.executable, "-m", "ssnas", "bench", "search"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
                "-m", "ssnas", "bench", "search"]
    threads = {"OMP_NUM_THREADS": "1"} if args.device == "cpu" else {}

    rows: list[dict] = []

    def measure(name: str, cmd: list[str], **facts: object) -> dict:
        print(f"gpu.sh: {name} ...", file=sys.stderr, flush=True)
        row = {"name": name, **facts, **_run(cmd, timeout, threads)}
        rows.append(row)
        print(f"gpu.sh: {name}: " + (row["error"] if "error" in row else f"{row['images_per_s']} img/s"),
              file=sys.stderr, flush=True)
        return row

    variants = [("textbook", "fp32")] if args.tiny else [("textbook", "fp32"), ("fast", "fp32"), ("textbook", "bf16")]
    if args.device == "cpu" and not args.tiny:
        variants = [("fast", "fp32"), ("textbook", "fp32")]
    for objective in ("supervised", "simclr"):
        for kernels, precision in variants:
            measure(f"ssnas {objective} 1 process, kernels {kernels}, {precision}",
                    [*bench, *common, "--objective", objective, "--kernels", kernels, "--precision", precision],
                    objective=objective, processes=1, kernels=kernels, precision=precision)
        measure(f"ssnas {objective} {nproc} processes (torchrun), default kernels and precision",
                [*torchrun, *common, "--objective", objective], objective=objective, processes=nproc,
                kernels="auto", precision="fp32")
    if cifar:
        peer = [sys.executable, str(ROOT / "benchmarks" / "nni_darts_peer.py"), "--device", args.device,
                "--layers", str(shape["layers"]), "--init-channels", str(shape["init_channels"]),
                "--batch-size", str(shape["batch_size"]), "--steps", str(shape["steps"]),
                "--warmup", str(shape["warmup"]), "--data-root", args.data_root]
        measure("NNI 3.0 DARTS supervised 1 process", peer, objective="supervised", processes=1, impl="nni")
    else:
        rows.append({"name": "NNI 3.0 DARTS supervised 1 process", "skipped": "NNI's peer needs the CIFAR-10 tree "
                     f"(cifar10/train/<class>/) under --data-root {args.data_root}"})

    derived: dict[str, object] = {}
    for objective in ("supervised", "simclr"):
        one = [r for r in rows if r.get("objective") == objective and r.get("processes") == 1
               and "images_per_s" in r and r.get("impl") != "nni"]
        many = next((r for r in rows if r.get("objective") == objective and r.get("processes") == nproc
                     and nproc > 1 and "images_per_s" in r), None)
        if not one:
            continue
        best = max(one, key=lambda r: r["images_per_s"])
        default = next((r for r in one if (r["kernels"], r["precision"]) == (
            ("textbook", "fp32") if args.device == "cuda" else ("fast", "fp32"))), best)  # what auto runs
        per_image = 1.0 / default["images_per_s"]
        derived[objective] = {
            "fastest_single_process": best["name"],
            "projected_50_epoch_search_h_1_process": round(SEARCH_EPOCHS * SEARCH_IMAGES * per_image / 3600, 2),
        }
        if many is not None:
            derived[objective].update({
                "scaling_efficiency": round(many["images_per_s"] / (nproc * default["images_per_s"]), 3),
                f"projected_50_epoch_search_h_{nproc}_processes":
                    round(SEARCH_EPOCHS * SEARCH_IMAGES / many["images_per_s"] / 3600, 2)})
        nni = next((r for r in rows if r.get("impl") == "nni" and "images_per_s" in r), None)
        if nni is not None:
            derived[objective]["speed_vs_nni_darts_supervised"] = round(default["images_per_s"] / nni["images_per_s"], 2)
    result = {"what": "benchmarks/gpu.sh", "tiny": args.tiny, "processes": nproc, "shape": shape,
              "dataset": "cifar10" if cifar else "fashion-mnist (no CIFAR-10 tree: toy sizes only)",
              "environment": _environment(args.device), "rows": rows, "derived": derived,
              "note": ("GPU figures" if args.device == "cuda" else
                       "CPU run: checks the script; these are not GPU figures")}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(derived))
    print(f"gpu.sh: {len(rows)} rows in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
