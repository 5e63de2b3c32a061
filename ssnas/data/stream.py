"""Image folders larger than memory: decoded on the fly by worker processes, batch by batch, in the order the loop asks.

The in-memory path holds every image as one uint8 tensor (decoded once, cached as .npz) and gathers a batch with
`images[index]` on the training device. The streaming path holds only the file list (`FolderImages`): a torch
DataLoader whose worker processes decode each batch's files with the same decoder as the cache
(`ssnas.data.decode.decode_files`), hands the uint8 batch [B, S, S, 3] over, and the loop moves it to the device,
where the batched augmentation runs as before. Both paths read the batches of the same index lists, so a run's
batches, and so its result, do not depend on the path (tests/test_stream.py trains both and compares).

`batches(images, index_lists, device)` is the one way the loops read images; it takes either kind. Which kind a
folder becomes is `use_streaming`: `--stream auto` (the default) streams when the decoded images would take more
than `--stream-above-gb` or a quarter of the machine's memory, so CIFAR-sized data keeps the fast in-memory path.
"""
from __future__ import annotations

import os
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ssnas.data.decode import decode_files, import_decoders
from ssnas.errors import UserError

STREAM_MODES = ("auto", "on", "off")
# --stream auto also streams above this share of physical memory: the decoded set, its copy on the device (CPU
# training) and the views must fit beside each other
RAM_SHARE = 0.25


def physical_memory() -> int:
    """Bytes of RAM (0 where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def use_streaming(mode: str, count: int, size: int, above_gb: float) -> bool:
    """Whether `count` images of `size` x `size` RGB are streamed: `mode` on/off, or auto by their decoded size."""
    if mode not in STREAM_MODES:
        raise UserError(f"--stream must be one of {', '.join(STREAM_MODES)}, got {mode!r}")
    if not above_gb > 0:
        raise UserError(f"--stream-above-gb must be positive, got {above_gb}")
    if mode != "auto":
        return mode == "on"
    limit = above_gb * 2**30
    ram = physical_memory()
    if ram:
        limit = min(limit, RAM_SHARE * ram)
    return count * size * size * 3 > limit


def default_workers() -> int:
    """Decoding processes when --workers is 0: one per CPU this process may use, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


class FolderImages:
    """The images of a folder as a lazy uint8 array [N, size, size, 3]: only the file paths are held. Indexing
    (`images[3]`, `images[:100]`, `images[tensor]`) decodes in this process; the loops read through `batches`,
    which decodes in `workers` processes. `select` is a lazy subset."""

    dtype = torch.uint8

    def __init__(self, files: Sequence[str], size: int, workers: int = 0):
        if workers < 0:
            raise UserError(f"--workers must be >= 0 (0 = one per CPU, at most 8), got {workers}")
        self.files = list(files)
        self.size = int(size)
        self.workers = int(workers) or default_workers()

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.files), self.size, self.size, 3)

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return f"FolderImages({len(self)} files at {self.size}x{self.size}, {self.workers} decoding workers)"

    def _positions(self, index: Any) -> np.ndarray:
        return np.arange(len(self.files))[_as_numpy_index(index)].reshape(-1)

    def select(self, index: Any) -> FolderImages:
        """The images at `index` (indices, a slice or a bool mask), still lazy."""
        return FolderImages([self.files[i] for i in self._positions(index)], self.size, self.workers)

    def read(self, positions: Sequence[int]) -> torch.Tensor:
        """The images at `positions`, decoded here: uint8 [len(positions), size, size, 3]."""
        return torch.from_numpy(decode_files([self.files[i] for i in positions], self.size))

    def __getitem__(self, index: Any) -> torch.Tensor:
        out = self.read(self._positions(index).tolist())
        return out[0] if isinstance(index, (int, np.integer)) else out


def _as_numpy_index(index: Any) -> Any:
    if isinstance(index, torch.Tensor):
        return index.cpu().numpy()
    return index


class _BatchDecoder(torch.utils.data.Dataset):
    """A 'dataset' whose items are whole batches: the key is a list of positions, the item their uint8 images."""

    def __init__(self, images: FolderImages):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, positions: list[int]) -> torch.Tensor:
        return self.images.read(positions)


def _quiet_worker(_: int) -> None:
    torch.set_num_threads(1)  # one decoding process per core; a thread pool in each would fight the others


def on_device(images: torch.Tensor | FolderImages, device: torch.device) -> torch.Tensor | FolderImages:
    """What the loops index: an in-memory set moved to the device once; a streamed set stays a file list."""
    return images if isinstance(images, FolderImages) else images.to(device)


def batches(images: torch.Tensor | FolderImages, index_lists: Sequence[torch.Tensor], device: torch.device,
            ) -> Iterator[torch.Tensor]:
    """uint8 batches [B, H, W, C] on `device`, one per index tensor of `index_lists`, in that order.

    In memory: `images[index]`, gathered where `images` lives (pass them through `on_device` first). Streamed:
    the batches are decoded by `images.workers` processes, a few batches ahead of the loop, and moved to `device`
    (through pinned memory on CUDA). Nothing here draws from torch's global random generator, so the loop's own
    draws (drop-path masks) are the same on both paths."""
    if not isinstance(images, FolderImages):
        for index in index_lists:
            yield images[index.to(images.device)].to(device)
        return
    keys = [index.cpu().tolist() for index in index_lists]
    workers = min(images.workers, len(keys))
    import_decoders()  # once, in this process: the forked workers inherit them
    loader = torch.utils.data.DataLoader(
        _BatchDecoder(images), batch_size=None, sampler=keys, num_workers=workers,
        pin_memory=device.type == "cuda", worker_init_fn=_quiet_worker if workers else None,
        # the workers' seeds come from this generator, not from torch's global one (which the loop owns)
        generator=torch.Generator().manual_seed(0), prefetch_factor=2 if workers else None)
    for batch in loader:
        yield batch.to(device, non_blocking=True)


def chunks(n: int, size: int) -> list[torch.Tensor]:
    """Index tensors 0..n-1 in consecutive chunks of `size` (feature extraction, statistics)."""
    return list(torch.arange(n).split(size))
