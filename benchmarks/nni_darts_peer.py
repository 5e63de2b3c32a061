#!/usr/bin/env python
"""Peer benchmark: NNI 3.0's own first-order DARTS, supervised, on real CIFAR-10.

Runs ``nni.nas.strategy.DARTS()`` (its defaults: first order, arc lr 3e-4) on
``nni.nas.hub.pytorch.DARTS(width=C, num_cells=L, dataset='cifar')`` through
``NasExperiment(space, evaluator, strategy).run()`` with NNI's standard supervised
evaluator (``Classification``: cross-entropy, Adam), and prints ONE JSON line on stdout.

Definitions (shared with ssnas's own bench, so the two numbers are comparable):

- one step = one architecture step on a val batch + one weight step on a train batch,
  each batch B images of 32x32x3 (NNI's DARTS ``training_step`` does exactly this);
- s_per_step = wall time from ``on_train_batch_start`` of the first timed step to
  ``on_train_batch_end`` of the last, divided by the number of timed steps (so Lightning's
  and NNI's per-step overhead and the loader are included), after ``--warmup`` steps;
- images_per_s = B / s_per_step (each image counted once per step: the train batch's);
- peak_rss_mb = ru_maxrss / 1024 for this process; with --device cuda also peak_mem_mb, CUDA max allocated.

Self-contained on purpose: depends only on torch, torchvision, PIL, nni and
pytorch_lightning (not on ssnas).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
REPO_ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    default_root = os.environ.get("SSNAS_DATA") or str(REPO_ROOT.parent / "shared" / "data")
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, default=5, help="DARTS cells (num_cells)")
    p.add_argument("--init-channels", type=int, default=8, help="DARTS width")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    p.add_argument("--data-root", default=default_root,
                   help="folder holding cifar10/train/<class>/*.jpg (default $SSNAS_DATA or ../shared/data)")
    p.add_argument("--subset", type=int, default=2048,
                   help="images decoded: the first N of a deterministic shuffle, split half train, half val")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="where NNI's Lightning trainer runs (cuda: peak memory is torch.cuda.max_memory_allocated)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="torch threads (default: all cores, os.cpu_count())")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true", help="keep NNI's and Lightning's logs")
    args = p.parse_args(argv)
    if min(args.layers, args.init_channels, args.batch_size, args.steps, args.subset, args.threads) < 1 or args.warmup < 0:
        p.error("sizes and --steps must be >= 1, --warmup >= 0")
    if args.layers < 3:
        p.error("--layers must be >= 3 (NNI's DARTS space splits its cells into 3 stages)")
    if args.subset < 2:
        p.error("--subset must be >= 2 (half train, half val)")
    return args


def load_cifar_subset(root: Path, n: int, seed: int):
    """Decode the first ``n`` images of a seeded shuffle of CIFAR-10 train into normalised tensors."""
    import numpy as np
    import torch
    from PIL import Image

    train_dir = root / "cifar10" / "train"
    if not train_dir.is_dir():
        raise SystemExit(f"CIFAR-10 image folder not found: {train_dir} (set --data-root or $SSNAS_DATA)")
    classes = sorted(d.name for d in train_dir.iterdir() if d.is_dir())  # sorted = CIFAR-10 label order
    files = [(f, label) for label, c in enumerate(classes) for f in sorted((train_dir / c).glob("*.jpg"))]
    random.Random(seed).shuffle(files)
    files = files[:n]
    images = np.stack([np.asarray(Image.open(f).convert("RGB"), dtype=np.uint8) for f, _ in files])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    x = (x - mean) / std
    y = torch.tensor([label for _, label in files], dtype=torch.long)
    return x.contiguous(), y


def _forget_experiment(exp_id: str) -> None:
    """Drop this run from NNI's manifest (~/nni-experiments/.experiment); its folder is already gone.

    NOTE: NNI guards that manifest with filelock's SoftFileLock subclass, which deadlocks with
    filelock >= 3.12 (NasExperiment.run() then hangs before training): nni 3.0 pins filelock<3.12.
    """
    try:
        from nni.tools.nnictl.config_utils import Experiments
        Experiments().remove_experiment(exp_id)
    except Exception as exc:  # tidying only; never fail the benchmark for it
        print(f"note: could not drop experiment {exp_id} from NNI's manifest: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.verbose:
        warnings.filterwarnings("ignore")
        os.environ.setdefault("PYTHONWARNINGS", "ignore")
        for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
            logging.getLogger(name).setLevel(logging.ERROR)

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    x, y = load_cifar_subset(Path(args.data_root), args.subset, args.seed)
    half = len(x) // 2

    import nni
    import pytorch_lightning as pl
    from nni.nas.evaluator.pytorch import Classification, DataLoader
    from nni.nas.experiment import NasExperiment
    from nni.nas.hub.pytorch import DARTS as DartsSpace
    from nni.nas.strategy import DARTS as DartsStrategy
    from torch.utils.data import RandomSampler, TensorDataset

    if not args.verbose:
        from nni.runtime.log import silence_stdout
        silence_stdout()

    total = args.warmup + args.steps
    # For a throughput benchmark the same preprocessed tensors are fed every epoch: DARTS's
    # usual random crop + flip is omitted (its cost is negligible next to the supernet step).
    # Samplers draw exactly B * (warmup + steps) images, so each loader yields exactly
    # warmup + steps batches whatever the subset size (permutations repeat if needed).
    gen_t = torch.Generator().manual_seed(args.seed)
    gen_v = torch.Generator().manual_seed(args.seed + 1)
    train_ds = TensorDataset(x[:half], y[:half])
    val_ds = TensorDataset(x[half:], y[half:])
    train_loader = DataLoader(train_ds, batch_size=args.batch_size, drop_last=True,
                              sampler=RandomSampler(train_ds, num_samples=args.batch_size * total, generator=gen_t))
    val_loader = DataLoader(val_ds, batch_size=args.batch_size, drop_last=True,
                            sampler=RandomSampler(val_ds, num_samples=args.batch_size * total, generator=gen_v))

    class StepTimer(pl.Callback):
        """Wall-clock timestamps around NNI's own training step (arch step on val + weight step on train)."""

        def __init__(self) -> None:
            self.start: dict[int, float] = {}
            self.end: dict[int, float] = {}

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            sync()
            self.start[batch_idx] = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            sync()
            self.end[batch_idx] = time.perf_counter()

    cuda = args.device == "cuda"

    def sync() -> None:  # CUDA kernels run asynchronously: wait for them before reading the clock
        if cuda:
            torch.cuda.synchronize()

    timer = StepTimer()
    space = DartsSpace(width=args.init_channels, num_cells=args.layers, dataset="cifar")
    # NNI's standard supervised path; lr / weight decay as in NNI's DARTS tutorial.
    evaluator = Classification(
        learning_rate=1e-3, weight_decay=1e-4,
        train_dataloaders=train_loader, val_dataloaders=val_loader, num_classes=10,
        max_epochs=1, limit_train_batches=total, num_sanity_val_steps=0,
        accelerator="gpu" if cuda else "cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
    )
    strategy = DartsStrategy()  # NNI's defaults: first order only, arc lr 3e-4, no grad clip
    experiment = NasExperiment(space, evaluator, strategy)
    with tempfile.TemporaryDirectory(prefix="nni_darts_peer_") as workdir:
        # keep NNI's experiment logs/checkpoints out of ~/nni-experiments
        experiment.config.experiment_working_directory = workdir
        experiment.run()
        experiment.stop()
    _forget_experiment(experiment.id)

    timed = [i for i in range(args.warmup, total) if i in timer.start and i in timer.end]
    if len(timed) != args.steps:
        print(f"error: expected {args.steps} timed steps, NNI ran {len(timer.end)} in total", file=sys.stderr)
        return 1
    s_per_step = (timer.end[total - 1] - timer.start[args.warmup]) / args.steps
    result = {
        "impl": "nni-darts",
        "objective": "supervised",
        "layers": args.layers,
        "init_channels": args.init_channels,
        "batch_size": args.batch_size,
        "images_per_s": round(args.batch_size / s_per_step, 3),
        "s_per_step": round(s_per_step, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **({"peak_mem_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)} if cuda else {}),
        "device": args.device,
        "steps_timed": args.steps,
        "warmup_steps": args.warmup,
        "torch": torch.__version__,
        "nni": nni.__version__,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
