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

from ssnas.errors import Interrupted, UserError


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
    log_every: int | None = field(default=None, metadata={
        "help": "write a metrics.jsonl row every N steps; unset = about 20 rows per epoch (every step of a short "
                "epoch)", "range": "[1, 1e9]", "resume_safe": True})
    check_every: int = field(default=50, metadata={
        "help": "check every weight, alpha and BatchNorm statistic for NaN or infinity every N steps (always before "
                "a checkpoint); 0 = before checkpoints only", "range": "[0, 1e9]", "resume_safe": True})
    progress: bool = field(default=True, metadata={
        "help": "show a progress bar inside each epoch (on a terminal); the per-epoch lines print either way",
        "resume_safe": True})
    quiet: bool = field(default=False, metadata={"help": "print nothing but errors (the run's files are the same)",
                                                 "resume_safe": True})
    threads: int = field(default=0, metadata={
        "help": "CPU threads for torch; 0 = the CPUs this process may use (its affinity, the container's CPU quota, "
                "OMP_NUM_THREADS, and those other processes leave free), whichever is fewest",
        "range": "[0, 4096]", "resume_safe": True})
    tensorboard: bool = field(default=True, metadata={"help": "write TensorBoard event files to OUT/tensorboard",
                                                      "resume_safe": True})
    benchmark: str = field(default="", metadata={
        "help": "a NAS benchmark's results table (CSV: 'arch' in the space's text form + numeric columns, e.g. "
                "NAS-Bench-201's); each epoch's derived cell is looked up and its true accuracy, rank and "
                "percentile logged. Measurement only: the search never reads it", "resume_safe": True})
    kernels: str = field(default="auto", metadata={
        "help": "the exact speed route of ssnas/kernels: fast, textbook (plain torch: cuDNN on CUDA) or auto: fast on "
                "CPU, textbook on CUDA until benchmarks/gpu.sh measures fast faster there; the maths is the same",
        "choices": ("auto", "fast", "textbook"), "resume_safe": True})
    sync_bn: bool = field(default=False, metadata={
        "help": "under torchrun: batch norm over the global batch, every rank's images (SimCLR's global BN); N "
                "ranks x B images are then exactly one process's N*B. Off: each rank's BN sees its own B, as DDP"})
    world_size: int = field(default=1, metadata={
        "cli": False, "help": "processes the run was started with (torchrun's WORLD_SIZE); recorded by the run",
        "range": "[1, 1e6]", "resume_safe": True})
    global_batch_size: int = field(default=0, metadata={
        "cli": False, "help": "images per step over all processes: --batch-size (per process) x world_size; "
                              "recorded by the run", "range": "[0, 1e9]", "resume_safe": True})
    def check(self) -> None:
        if self.resume and self.force:
            raise UserError("--resume continues the run in --out and --force deletes it; pass one of them")
        if not self.out.strip():
            raise UserError("run.out (--out) is empty; name the run's output folder")

    def log_interval(self, steps: int) -> int:
        """--log-every, or for an unset one about 20 rows per epoch of `steps` steps."""
        return self.log_every if self.log_every is not None else max(1, round(steps / 20))

    def derive_log_every(self, steps: int) -> list[str]:
        """Resolve an unset --log-every from the epoch's length; the note says what was derived."""
        if self.log_every is not None:
            return []
        self.log_every = self.log_interval(steps)
        return [f"--log-every {self.log_every} ({steps} steps per epoch)"]


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


def epochs_done(state: dict[str, Any]) -> int:
    """Finished epochs recorded in a checkpoint. Checkpoints count epochs from 1 ("epochs_done"); those written
    before that held the 0-based index of the last finished epoch ("epoch")."""
    return int(state["epochs_done"]) if "epochs_done" in state else int(state["epoch"]) + 1


def resume_history(state: dict[str, Any]) -> list[dict[str, Any]]:
    """A checkpoint's per-epoch history, epochs counted from 1 (older checkpoints counted from 0)."""
    history = list(state.get("history", []))
    if "epochs_done" not in state:
        history = [{**h, "epoch": h["epoch"] + 1} for h in history]
    return history


def interrupted(cause: KeyboardInterrupt, out: Any, command: str, epoch: int, epochs: int, done: int) -> Interrupted:
    """What Ctrl-C (or SIGTERM) in epoch `epoch` (from 1) left behind, when `done` epochs are checkpointed, and the
    one command that continues."""
    if isinstance(cause, Interrupted) and cause.message:
        return cause  # already explained (an inner run's own interruption)
    how = f"{command} --resume --out {out}"
    by = f" by {cause.signal}" if isinstance(cause, Interrupted) and cause.signal else ""
    code = cause.code if isinstance(cause, Interrupted) else 130
    if done:
        saved = (f"epochs 1-{done} of {epochs} are saved" if done > 1 else f"epoch 1 of {epochs} is saved")
        text = f"interrupted{by} in epoch {epoch}/{epochs}; {saved} in {out}/checkpoint.pt; continue with: {how}"
    else:
        text = (f"interrupted{by} in epoch {epoch}/{epochs}, before any epoch finished: nothing was checkpointed "
                f"({out}/config.json holds the settings); start it again with: {how}")
    return Interrupted(text, code)


def record_world(cfg: Any, world: int) -> None:
    """Write the number of processes and the global batch into a search or retrain config (config.json shows
    them; a resume compares them)."""
    cfg.run.world_size = world
    cfg.run.global_batch_size = cfg.optim.batch_size * world


def _with_global_batch(cfg: dict[str, Any]) -> dict[str, Any]:
    """A saved or current config with optim.batch_size read as the global batch (--batch-size x processes): a run
    may resume on another number of processes if the global batch stays, as the data order, the steps per epoch
    and the schedules then do."""
    if not isinstance(cfg.get("optim"), dict) or "batch_size" not in cfg["optim"]:
        return cfg
    world = int((cfg.get("run") or {}).get("world_size", 1))
    return {**cfg, "optim": {**cfg["optim"], "batch_size": int(cfg["optim"]["batch_size"]) * world}}


def with_defaults(saved: dict[str, Any], defaults: dict[str, Any], keys: dict[str, Any] | None = None) -> dict[str, Any]:
    """`saved` with the keys it lacks taken from `defaults`: a config written before a setting existed ran with
    that setting's default (objective options stay as saved). With `keys`, only keys that `keys` has are added."""
    out = dict(saved)
    for k, v in defaults.items():
        if keys is not None and k not in keys:
            continue
        if k not in out:
            out[k] = v
        elif isinstance(v, dict) and isinstance(out[k], dict) and k != "options":
            out[k] = with_defaults(out[k], v, None if keys is None else keys[k])
    return out


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


def resume_changes(saved: dict[str, Any], current: dict[str, Any], safe: Collection[str], out: Path,
                   defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a resume changes, as {key: {"was": ..., "now": ...}}; a UserError when it changes a key that is not
    resume-safe (fields marked `resume_safe`: how a run runs, and its learning rates and gradient clip). The batch
    is compared as the global batch (--batch-size x processes), so a run may resume on another number of processes
    under torchrun as long as the global batch stays. Keys the saved config lacks are `defaults`' (a config written
    before a setting existed ran with its default)."""
    saved, current = _with_global_batch(with_defaults(saved, defaults or {})), _with_global_batch(current)
    diffs = [k for k in config_differences(saved, current) if k != "run.resume"]
    refused = [k for k in diffs if k not in safe]
    if refused:
        def name(k: str) -> str:
            return "the global batch (--batch-size x processes)" if k == "optim.batch_size" else k
        shown = ", ".join(f"{name(k)} ({_value(saved, k)!r} -> {_value(current, k)!r})" for k in refused[:4])
        raise UserError(f"cannot resume {out}: the settings differ from the saved run in {shown}"
                        f"{' and more' if len(refused) > 4 else ''}, and only those --help marks 'may change on "
                        f"--resume' may (learning rates, --grad-clip, how the run runs); `--resume --out {out}` alone "
                        f"continues with the saved settings ({out / 'config.json'})")
    return {k: {"was": _value(saved, k), "now": _value(current, k)} for k in diffs}


def record_resume(out: Path, epoch: int, changes: dict[str, Any]) -> None:
    """Append one line to OUT/resumes.jsonl: when the run was resumed, from which finished epoch, what changed."""
    row = {"time": round(time.time(), 3), "finished_epochs": epoch, "changed": changes}
    with open(Path(out) / "resumes.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
