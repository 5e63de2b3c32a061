"""Atomic writes: a crash mid-write leaves the previous file intact, never a truncated one."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ssnas.errors import UserError
from ssnas.files import atomic_write


def write_text(path: Path, text: str) -> None:
    atomic_write(Path(path), lambda f: f.write(text.encode()))


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def save(path: Path, state: dict[str, Any]) -> None:
    atomic_write(Path(path), lambda f: torch.save(state, f))


def load(path: Path) -> dict[str, Any]:
    try:
        # weights_only: a checkpoint holds tensors, numbers, strings and dicts, never code to run
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError) as e:
        raise UserError(f"cannot read checkpoint {path}: {str(e).splitlines()[0]}; "
                        f"delete it to start over or point --out at another run") from None
