"""What ssnas asks of files: user files read within bounds, its own files written atomically.

Reading: a config or a genotype is a few kilobytes. Reading a multi-gigabyte file into memory, or handing a parser
a JSON array nested a million levels deep (Python's parsers recurse and die with RecursionError), is refused up
front with a one-line UserError instead.

Writing: `atomic_write` writes a temporary file beside the target, flushes it to disk and renames it over the
target, so a crash leaves the old file or the new one, never half of one. The file gets the permissions the
user's umask gives a new file (mkstemp's private 0600 would hide a run from the user's group). A temporary file
a killed process left behind is named `.NAME.<random>.tmp`; `remove_stale_temps` clears them.
"""
from __future__ import annotations

import errno
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable

from ssnas.errors import UserError

MAX_CONFIG_BYTES = 1 << 20  # a TOML config or a run's config.json
MAX_GENOTYPE_BYTES = 1 << 20  # a genotype .json/.txt/.py file
MAX_NESTING = 32  # a genotype nests 4 levels (cell, pair, op); a config 3
STALE_TEMP_S = 3600.0  # in a folder several processes write: a temporary file this old belongs to no running write

_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # tempfile.mkstemp(prefix=".NAME.", suffix=".tmp")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")


def read_bounded(path: Path, limit: int, what: str) -> str:
    """The UTF-8 text of `path`, refused when it is larger than `limit` bytes (checked before reading)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size <= limit:
            with open(path, "rb") as f:
                data = f.read(limit + 1)  # a FIFO or a growing file reports no size worth trusting
            size = max(size, len(data))
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if size > limit:
        raise UserError(f"{what} {path} is {size:,} bytes, more than the {limit:,} such a file can need; "
                        f"pass the right file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{what} {path} is not UTF-8 text; pass the right file") from None


def nesting(text: str) -> int:
    """How deeply the JSON `text` nests its arrays and objects (brackets inside strings do not count)."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        depth += 1 if match.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def loads_json(text: str, source: str, limit: int = MAX_NESTING) -> Any:
    """json.loads, refusing text nested more than `limit` levels deep; a JSONDecodeError is the caller's."""
    if nesting(text) > limit:
        raise UserError(f"{source} nests its lists and objects more than {limit} levels deep; no genotype or config "
                        f"does, so this is not one")
    return json.loads(text)


# ---- writing ------------------------------------------------------------------------------------------------------

def umask() -> int:
    """The process's umask, read without changing it (Linux: /proc/self/status)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but only where /proc is missing)
    os.umask(current)
    return current


def new_file_mode() -> int:
    """What open() gives a new file: 0666 less the umask."""
    return 0o666 & ~umask()


def temp_name(path: Path) -> str:
    """The prefix of `path`'s temporary files: `.NAME.`, followed by a random part and `.tmp`."""
    return f".{path.name}."


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write `path` through `write(file)` into a temporary file, fsync it and rename it over `path`. A full disk is a
    one-line UserError, and the previous file stays as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_name(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), new_file_mode())
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX within one filesystem
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            kept = "the previous one is kept" if path.exists() else "nothing was written"
            raise UserError(f"no space left on the device of {path.parent} while writing {path.name} ({kept}); free "
                            f"some space and run it again (a run continues with --resume)") from None
        raise


def remove_stale_temps(folder: Path, older_than_s: float = 0.0) -> list[Path]:
    """Delete the temporary files killed writes left in `folder` (`.NAME.<random>.tmp`), those older than
    `older_than_s` seconds; returns what was deleted. Call it only where no other process is writing (a run folder
    holds its lock), or with an age no write takes (a shared cache)."""
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if _TEMP.match(entry.name) and entry.is_file(follow_symlinks=False):
            try:
                if now - entry.stat(follow_symlinks=False).st_mtime >= older_than_s:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
            except OSError:
                continue
    return removed
