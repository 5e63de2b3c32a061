"""The cache of decoded image folders: where it lives, what its key covers, how it is written.

An image folder (a CIFAR-10 JPEG tree: 60,000 files) takes a minute to decode and a second to read back decoded,
so the decoded uint8 array is kept as an uncompressed .npz file under the cache directory: `$SSNAS_CACHE`, else
`$XDG_CACHE_HOME/ssnas`, else `~/.cache/ssnas`. Nothing is ever written into the data folder, so a read-only or
shared data root works as it is.

The key is a SHA-256 over the cache format, the decoded size and, for every image file, its path relative to the
folder, its size and its modification time in nanoseconds: adding, removing, renaming, rewriting or touching an
image makes a new key, and so a fresh decode. A damaged or foreign cache file is decoded afresh, never fatal; a
cache directory that cannot be written only costs the decode next time.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np

from ssnas.errors import UserError
from ssnas.files import STALE_TEMP_S, atomic_write, remove_stale_temps

FORMAT = 2  # bump when the layout or the key changes: old files are then never read


def cache_dir() -> Path:
    """$SSNAS_CACHE, else $XDG_CACHE_HOME/ssnas, else ~/.cache/ssnas."""
    if os.environ.get("SSNAS_CACHE"):
        return Path(os.environ["SSNAS_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "ssnas"


def cache_key(folder: Path, files: list[tuple[str, int, int]], size: int) -> str:
    """SHA-256 of (format, size, every file's relative path, byte size and mtime_ns); `files` holds
    (path, size, mtime_ns) with paths under `folder`."""
    skip = len(str(folder)) + 1  # every path starts with "<folder>/"; os.path.relpath is 10x slower
    digest = hashlib.sha256(f"ssnas-image-cache {FORMAT} {size}\n".encode())
    for path, nbytes, mtime_ns in files:
        digest.update(f"{path[skip:]}\0{nbytes}\0{mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def cache_path(folder: Path, key: str, size: int) -> Path:
    """`<parent>-<folder>-<size>px-<key>.npz` in the cache directory (the names are for people)."""
    return cache_dir() / f"{folder.parent.name}-{folder.name}-{size}px-{key[:24]}.npz"


def read(path: Path, key: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached images, or None when there is no usable cache file (missing, damaged, another key or shape)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as cached:
            if str(cached["key"]) != key:
                return None
            images = cached["images"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return images if images.shape == shape and images.dtype == np.uint8 else None


def write(path: Path, key: str, images: np.ndarray) -> bool:
    """Store the images atomically; False (and no cache) when the cache directory cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path.parent, STALE_TEMP_S)  # shared by every run: only leftovers of killed writes
        atomic_write(path, lambda f: np.savez(f, images=images, key=np.array(key)))
    except (OSError, ValueError, UserError):  # UserError: a full disk; no cache then, but no failure either
        return False
    return True
