"""Atomic writes: a crash mid-write leaves the previous file intact, never a truncated one."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ssnas.errors import UserError


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX within one filesystem
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    _atomic(Path(path), lambda f: f.write(text.encode()))


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def save(path: Path, state: dict[str, Any]) -> None:
    _atomic(Path(path), lambda f: torch.save(state, f))


def load(path: Path) -> dict[str, Any]:
    try:
        # weights_only: a checkpoint holds tensors, numbers, strings and dicts, never code to run
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError) as e:
        raise UserError(f"cannot read checkpoint {path}: {str(e).splitlines()[0]}; "
                        f"delete it to start over or point --out at another run") from None
