"""Settings and helpers every long-running command shares: output folder, seed, device."""
from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection

import numpy as np
import torch

from ssnas.errors import UserError


@dataclass
class RunConfig:
    out: str = field(default="runs/search", metadata={"help": "output folder of the run", "resume_safe": True})
    seed: int = field(default=0, metadata={"help": "random seed: same seed, same data split, same result",
                                           "range": "[0, 4294967295]"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when available, else CPU), cpu, cuda, cuda:1, ...",
                                                  "resume_safe": True})
    resume: bool = field(default=False, metadata={"help": "continue the run in --out from its last checkpoint"})
    force: bool = field(default=False, metadata={
        "help": "start afresh in an --out that holds an earlier run, deleting that run's files (never others)",
        "resume_safe": True})
    stop_after: int = field(default=0, metadata={
        "help": "stop after N epochs in this invocation (time-limited jobs); continue later with --resume; 0 = never",
        "range": "[0, 100000]", "resume_safe": True})
    log_every: int = field(default=10, metadata={"help": "write a metrics.jsonl row every N steps",
                                                 "range": "[1, 1e9]", "resume_safe": True})
    check_every: int = field(default=50, metadata={
        "help": "check every weight, alpha and BatchNorm statistic for NaN or infinity every N steps (always before "
                "a checkpoint); 0 = before checkpoints only", "range": "[0, 1e9]", "resume_safe": True})
    progress: bool = field(default=True, metadata={"help": "show a progress bar", "resume_safe": True})
    tensorboard: bool = field(default=True, metadata={"help": "write TensorBoard event files to OUT/tensorboard",
                                                      "resume_safe": True})
    benchmark: str = field(default="", metadata={
        "help": "a NAS benchmark's results table (CSV: 'arch' in the space's text form + numeric columns, e.g. "
                "NAS-Bench-201's); each epoch's derived cell is looked up and its true accuracy, rank and "
                "percentile logged. Measurement only: the search never reads it", "resume_safe": True})

    def check(self) -> None:
        if self.resume and self.force:
            raise UserError("--resume continues the run in --out and --force deletes it; pass one of them")
        if not self.out.strip():
            raise UserError("run.out (--out) is empty; name the run's output folder")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise UserError(f"unknown device {name!r}; use auto, cpu or cuda[:N]")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for CUDA, but no CUDA GPU is visible; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: there are {torch.cuda.device_count()} CUDA GPU(s), numbered from 0")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A seed per (run, epoch, stream): an epoch's randomness does not depend on the epochs before it, so a
    resumed run draws exactly what the uninterrupted one drew."""
    return (seed * 1_000_003 + epoch * 7_919 + stream) % 2**63


def epoch_steps(images: int, batch_size: int, cap: int, what: str) -> int:
    """Full batches per epoch over `images` (`what` names them in the error), capped by --steps-per-epoch."""
    steps = images // batch_size
    if steps == 0:
        raise UserError(f"--batch-size {batch_size} is larger than {what} ({images} images); lower "
                        f"--batch-size or raise --subset")
    return min(steps, cap) if cap else steps


def config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between a saved config and the current one (objective options compared
    as a whole)."""
    keys = []
    for k in sorted(set(saved) | set(current)):
        a, b, key = saved.get(k), current.get(k), f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict) and k != "options":
            keys += config_differences(a, b, key + ".")
        elif a != b:
            keys.append(key)
    return keys


def _value(config: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def resume_changes(saved: dict[str, Any], current: dict[str, Any], safe: Collection[str], out: Path
                   ) -> dict[str, Any]:
    """What a resume changes, as {key: {"was": ..., "now": ...}}; a UserError when it changes a key that is not
    resume-safe (fields marked `resume_safe`: how a run runs, and its learning rates and gradient clip)."""
    diffs = [k for k in config_differences(saved, current) if k != "run.resume"]
    refused = [k for k in diffs if k not in safe]
    if refused:
        shown = ", ".join(f"{k} ({_value(saved, k)!r} -> {_value(current, k)!r})" for k in refused[:4])
        raise UserError(f"cannot resume {out}: the settings differ from the saved run in {shown}"
                        f"{' and more' if len(refused) > 4 else ''}, and only those --help marks 'may change on "
                        f"--resume' may (learning rates, --grad-clip, how the run runs); rerun with the original "
                        f"settings (--config {out / 'config.json'})")
    return {k: {"was": _value(saved, k), "now": _value(current, k)} for k in diffs}


def record_resume(out: Path, epoch: int, changes: dict[str, Any]) -> None:
    """Append one line to OUT/resumes.jsonl: when the run was resumed, from which finished epoch, what changed."""
    row = {"time": round(time.time(), 3), "finished_epochs": epoch, "changed": changes}
    with open(Path(out) / "resumes.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
