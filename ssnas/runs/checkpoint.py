"""Checkpoints that prove their integrity, and atomic writes: a crash mid-write leaves the previous file intact,
never a truncated one (ssnas.files.atomic_write).

A checkpoint file is one header line and torch.save's bytes:

    SSNAS-CHECKPOINT
    {"format": 1, "kind": "search", "size": 123456, "sha256": "..."}
    <size bytes written by torch.save>

The header is written in the same atomic rename as the payload it describes. `load` reads the header, checks the
size and the SHA-256 of the payload before torch unpickles a byte of it, and only then calls
`torch.load(weights_only=True)`. Anything else -- an empty or random file, a truncated copy, a bit flipped on disk,
someone else's file, a checkpoint of another kind -- is a one-line UserError; torch's own messages (and its hint to
load unsafely) never reach the user. Checkpoints written before the header existed (a bare torch zip file) still
load, without the integrity check.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import torch

from ssnas.errors import UserError
from ssnas.files import atomic_write

MAGIC = b"SSNAS-CHECKPOINT\n"
FORMAT = 1
MAX_HEADER = 4096
_ZIP = b"PK\x03\x04"  # torch.save's format since 1.6: what checkpoints without a header are


def write_text(path: Path, text: str) -> None:
    atomic_write(Path(path), lambda f: f.write(text.encode()))


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def save(path: Path, state: dict[str, Any], kind: str) -> None:
    """Write `state` with its header (kind, size, SHA-256), atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getbuffer()
    header = {"format": FORMAT, "kind": kind, "size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}

    def write(f: Any) -> None:
        f.write(MAGIC)
        f.write(json.dumps(header).encode() + b"\n")
        f.write(payload)

    atomic_write(Path(path), write)


def _refuse(path: Path, why: str) -> UserError:
    return UserError(f"cannot use checkpoint {path}: {why}; delete it (and start that run again, or with --force) "
                     f"or point at another run")


def read_payload(path: Path, kind: str | None = None) -> tuple[dict[str, Any], bytes]:
    """(header, payload bytes) of a checkpoint, verified; a legacy checkpoint gets the header {"format": 0}."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            start = f.read(len(MAGIC))
            if start.startswith(_ZIP):
                return {"format": 0}, start + f.read()
            if start != MAGIC:
                shown = "it is empty" if not start else "it does not start like one (a file of another program?)"
                raise _refuse(path, f"this is not an ssnas checkpoint: {shown}")
            line = f.readline(MAX_HEADER)
            payload = f.read()
    except OSError as e:
        raise _refuse(path, f"it cannot be read ({e.strerror or e})") from None
    try:
        header = json.loads(line)
        size, digest, fmt, found = header["size"], header["sha256"], header["format"], header["kind"]
    except (ValueError, KeyError, TypeError):
        raise _refuse(path, "its header is damaged") from None
    if not isinstance(fmt, int) or fmt > FORMAT:
        raise _refuse(path, f"it was written by a newer ssnas (checkpoint format {fmt}; this one reads {FORMAT})")
    if len(payload) != size:
        raise _refuse(path, f"it is truncated or was cut short ({len(payload):,} of {size:,} bytes)")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise _refuse(path, "its content does not match the SHA-256 written with it (damaged on disk, or changed "
                            "after it was written)")
    if kind is not None and found != kind:
        raise _refuse(path, f"it holds a {found} checkpoint, not a {kind} one")
    return header, payload


def load(path: Path, kind: str | None = None) -> dict[str, Any]:
    """A checkpoint's state, verified (module docstring); `kind` refuses a checkpoint of another kind."""
    _, payload = read_payload(path, kind)
    try:
        # weights_only: a checkpoint holds tensors, numbers, strings and dicts, never code to run
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception:  # torch's messages suggest loading unsafely: never pass them on
        raise _refuse(Path(path), "torch cannot read it as a checkpoint of tensors, numbers and strings") from None
    if not isinstance(state, dict):
        raise _refuse(Path(path), f"it holds a {type(state).__name__}, not a run's state")
    return state
