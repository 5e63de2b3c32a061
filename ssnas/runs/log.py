"""Structured logs: one JSON object per line in metrics.jsonl, the same numbers in TensorBoard."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from ssnas.files import atomic_write


def _epoch(line: str) -> int | None:
    """The epoch of a metrics row; None for a line a crash cut short (or anything else that is not a row)."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    epoch = row.get("epoch", 0) if isinstance(row, dict) else None
    return epoch if isinstance(epoch, int) else None


class RunLog:
    """Appends rows to `metrics.jsonl` and mirrors numeric fields to TensorBoard as `<kind>/<field>`.

    Rows carry the epoch they belong to, counted from 1. On resume after E finished epochs, rows of later epochs
    (written by the run that was killed) are dropped, and TensorBoard's purge_step does the same for its events, so
    a resumed run logs exactly like an uninterrupted one. A last line the kill cut in half is dropped too. With
    `write=False` (every rank but rank 0 of a distributed run) it writes nothing.
    """

    def __init__(self, out: Path, resume_epoch: int = 0, resume_step: int = 0, tensorboard: bool = True,
                 write: bool = True):
        self.write = write
        self.writer = None
        if not write:
            return
        self.path = Path(out) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_epoch > 0 and self.path.exists():
            kept = [line for line in self.path.read_text(errors="replace").splitlines()
                    if _epoch(line) is not None and _epoch(line) <= resume_epoch]
            atomic_write(self.path, lambda f: f.write("".join(line + "\n" for line in kept).encode()))
        elif resume_epoch == 0:
            atomic_write(self.path, lambda f: None)
        self._file = self.path.open("a")
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # heavy import, only when logging

            self.writer = SummaryWriter(str(Path(out) / "tensorboard"), purge_step=resume_step or None)

    def log(self, kind: str, step: int, **fields: Any) -> None:
        if not self.write:
            return
        row = {"kind": kind, "step": step, "time": round(time.time(), 3), **fields}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self.writer is not None:
            for name, value in fields.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self.writer.add_scalar(f"{kind}/{name}", value, step)

    def close(self) -> None:
        if not self.write:
            return
        self._file.close()
        if self.writer is not None:
            self.writer.close()
