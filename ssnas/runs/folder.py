"""A run's output folder, held by one run at a time.

`hold(out, ...)` is what search, retrain and continual retraining (and so every trial of `ssnas tune`) run inside:

- an exclusive lock: `fcntl.flock` on `OUT/.ssnas.lock`, held for the run's life. The kernel releases it when the
  process ends, however it ends, so a killed run leaves no stale lock; the holder's pid, host, command and start
  time are written into the file, for the message the next run prints ("in use by pid N ..."). A filesystem
  that refuses locks (ENOLCK, EOPNOTSUPP: some network and FUSE mounts) gets a warning and an unlocked run.
- the temporary files killed atomic writes left behind are removed (only now: no other process writes here);
- an earlier run's files are never overwritten by accident: without `--resume` or `--force`, a folder that holds
  any file an ssnas run writes is refused. `--force` deletes those files (and only those) first; `--resume` with
  nothing to resume from does the same.
- `--out` naming a file is a one-line error.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shlex
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from ssnas.errors import UserError
from ssnas.files import STALE_TEMP_S, new_file_mode, remove_stale_temps

LOCK = ".ssnas.lock"
# What the runs write into their folder: a folder holding any of these holds an earlier run. (nni/ is not one:
# `search --nni` writes it before its trial, the run itself, starts.)
OUTPUTS = ("checkpoint.pt", "config.json", "genotype.json", "genotypes.jsonl", "alphas.json", "network.json",
           "metrics.jsonl", "resumes.jsonl", "knn.jsonl", "continual.json", "eval.json", "tensorboard")
OUTPUT_PREFIXES = ("eval-",)  # eval-<protocol>.json and its log folder eval-<protocol>/


def outputs(out: Path) -> list[Path]:
    """The files and folders of an earlier ssnas run in `out` (never anything else)."""
    try:
        names = sorted(os.listdir(out))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [out / n for n in names if n in OUTPUTS or n.startswith(OUTPUT_PREFIXES)]


def check_out(out: Path, resume: bool, force: bool) -> None:
    """Refuse an --out that is a file, or that holds an earlier run when neither --resume nor --force is given."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; name a folder for the run's files")
    found = outputs(out)
    if found and not (resume or force):
        names = ", ".join(p.name for p in found[:4]) + (", ..." if len(found) > 4 else "")
        raise UserError(f"{out} already holds an earlier run ({names}); pass --resume to continue it, --force to "
                        f"start afresh (its files are deleted), or choose another --out")


def _holder(lock: Path) -> str:
    try:
        info = json.loads(lock.read_text())
        return (f"pid {info['pid']} on {info['host']} ({info['command']}, since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info['started']))})")
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _command() -> str:
    text = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
    return text if len(text) <= 160 else text[:157] + "..."


@contextlib.contextmanager
def hold(out: Path, resume: bool = False, force: bool = False) -> Iterator[Path]:
    """Hold `out` for the life of the `with` block (module docstring)."""
    out = Path(out)
    check_out(out, resume, force)  # before the lock file exists: a refused run leaves nothing behind
    out.mkdir(parents=True, exist_ok=True)
    lock = out / LOCK
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, new_file_mode())
    try:
        locked = _lock(fd, out, lock)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode() + b"\n", 0)
        check_out(out, resume, force)  # again, now that no other run can write here
        remove_stale_temps(out, 0.0 if locked else STALE_TEMP_S)  # unlocked: another run may be writing
        if force or (resume and not (out / "checkpoint.pt").exists()):  # nothing to resume: start afresh
            clear(out)
        yield out
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _lock(fd: int, out: Path, lock: Path) -> bool:
    """Take the exclusive lock; refuse a folder another run holds. A filesystem without locks (some network or
    FUSE mounts answer ENOLCK or EOPNOTSUPP) gets a one-line warning and the run goes on unlocked."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
            print(f"ssnas: warning: the filesystem of {out} does not support locks ({e.strerror}); nothing stops "
                  f"another run from writing there at the same time", file=sys.stderr, flush=True)
            return False
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
    raise UserError(f"{out} is in use by {_holder(lock)}; wait for that run to end, or choose another --out")


def clear(out: Path) -> list[Path]:
    """Delete an earlier run's files from `out` (only the names ssnas writes: OUTPUTS, eval-*)."""
    removed = outputs(out)
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return removed


def is_held(out: Path) -> dict[str, Any] | None:
    """The holder's record when a run holds `out` now, else None (for tests and tools)."""
    lock = Path(out) / LOCK
    if not lock.exists():
        return None
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        try:
            return json.loads(lock.read_text())
        except (OSError, ValueError):
            return {}
    finally:
        os.close(fd)
    return None
