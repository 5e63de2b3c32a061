"""Datasets: every source (Fashion-MNIST, CIFAR, a folder of images, an .npz file) becomes an ImageSet.

An ImageSet holds all images in memory as one uint8 tensor [N, H, W, C], which keeps augmentation and batching
on the GPU free of per-image Python work; an image folder too large for that is streamed instead (its images a
`ssnas.data.stream.FolderImages`, decoded batch by batch by worker processes; `--stream`). Labels live beside the
images and can be dropped (``unlabeled()``) so that the label-free search provably never sees them.

Where each source is looked for:

- ``fashion-mnist``: idx files in ``<root>/fashion-mnist/``, ``<root>/FashionMNIST/raw/`` (torchvision's
  layout), then ``/usr/share/datasets/fashion-mnist/`` (Debian's ``dataset-fashion-mnist``); else a
  torchvision download.
- ``cifar10`` / ``cifar100``: an ImageFolder tree ``<root>/cifar10/<split>/<class>/*.jpg``; else
  torchvision's pickled batches under ``<root>`` (downloaded if missing and the network answers).
- a folder: class subfolders give labels (sorted names, as torchvision's ImageFolder); images directly in
  the folder are unlabeled. ``train/`` and ``test/`` subfolders, when present, are the two splits.
- an ``.npz`` file with x_train, x_test (uint8, NHWC or NHW) and optional y_train, y_test (and classes).

Decoded image folders are cached under ``$SSNAS_CACHE`` (else ``$XDG_CACHE_HOME/ssnas``, else ``~/.cache/ssnas``),
never in the data folder; the key covers every file's name, size and mtime (ssnas.data.cache).
"""

from __future__ import annotations

import gzip
import os
import socket
import threading
import urllib.parse
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssnas.data.decode import decode_files
from ssnas.data.stream import STREAM_MODES, FolderImages, batches, chunks, use_streaming
from ssnas.data import cache
from ssnas.errors import UserError

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
_FASHION_MNIST_MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
DEFAULT_FOLDER_IMAGE_SIZE = 32
MIN_IMAGE_SIZE = 4  # smaller images vanish in the networks' two stride-2 reductions
SPLITS = ("train", "test")

_IDX_IMAGES_MAGIC = 2051  # 0x0803: unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 2049  # 0x0801: unsigned bytes, 1 dimension
_MEAN_STD_SAMPLE = 10_000
_NETWORK_PROBE_S = 5.0
_DOWNLOAD_SOCKET_TIMEOUT_S = 60.0
_CIFAR = {
    # name: (display name, class count, torchvision folder holding the pickled batches)
    "cifar10": ("CIFAR-10", 10, "cifar-10-batches-py"),
    "cifar100": ("CIFAR-100", 100, "cifar-100-python"),
}
_ALIASES = {
    "fashion-mnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
    "cifar10": "cifar10", "cifar-10": "cifar10", "cifar100": "cifar100", "cifar-100": "cifar100",
}


@dataclass
class DataConfig:
    """Which images to load and how much of them; the CLI turns each field into a --flag."""

    dataset: str = field(default="cifar10", metadata={
        "help": "fashion-mnist, cifar10, cifar100, a folder of images, or an .npz file"})
    data_root: str = field(default="", metadata={
        "help": "folder holding the datasets (default: $SSNAS_DATA if set, else ./data)"})
    subset: int = field(default=0, metadata={
        "help": "use only this many training images, class-balanced (0 = all)", "range": "[0, 1e9]"})
    train_portion: float = field(default=0.5, metadata={
        "help": "share of the training images for the weight step; the rest drive the architecture step",
        "range": "(0, 1)"})
    image_size: int = field(default=0, metadata={
        "help": "image folders only: resize every image to this square size (0 = 32)", "range": "[0, 1024]"})
    stream: str = field(default="auto", metadata={
        "help": "image folders: decode the images batch by batch in worker processes instead of holding them all "
                "in memory: auto (when the decoded images would take more than --stream-above-gb or a quarter of "
                "the RAM), on, off; same batches either way", "choices": STREAM_MODES, "resume_safe": True})
    stream_above_gb: float = field(default=8.0, metadata={
        "help": "--stream auto streams image folders whose decoded images would take more than this (GiB)",
        "range": "(0, 1e6]", "resume_safe": True})
    workers: int = field(default=0, metadata={
        "help": "processes that decode streamed images (0 = one per CPU, at most 8)", "range": "[0, 256]",
        "resume_safe": True})

    def check(self) -> None:
        if 0 < self.image_size < MIN_IMAGE_SIZE:
            raise UserError(f"data.image_size (--image-size) must be 0 (32) or at least {MIN_IMAGE_SIZE}, got "
                            f"{self.image_size}")


class ImageSet:
    """Images in memory as a uint8 tensor [N, H, W, C] (C = 1 or 3), labels kept apart."""

    def __init__(self, images: torch.Tensor | FolderImages, labels: torch.Tensor | None, classes: list[str],
                 name: str, *, no_labels_hint: str = "") -> None:
        if not isinstance(images, FolderImages):
            images = torch.as_tensor(images)
            if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[3] not in (1, 3):
                raise ValueError(f"images must be uint8 [N, H, W, C] with C 1 or 3, got {images.dtype} "
                                 f"{list(images.shape)}")
            if images.shape[1] != images.shape[2]:
                raise ValueError(f"images must be square, got {images.shape[1]}x{images.shape[2]}")
            images = images.contiguous()
        if labels is not None:
            labels = torch.as_tensor(labels).to(torch.int64).contiguous()
            if labels.shape != (images.shape[0],):
                raise ValueError(f"labels must have shape [{images.shape[0]}], got {list(labels.shape)}")
        self.images = images
        self._labels = labels
        self.classes = list(classes)
        self.name = name
        self._no_labels_hint = no_labels_hint or (
            "it serves label-free search only; for training or evaluation with labels use class "
            "subfolders (folder/<class>/*.png) or y_train/y_test in the .npz")

    @property
    def labels(self) -> torch.Tensor:
        """Int64 labels [N]; a UserError when this set has none."""
        if self._labels is None:
            raise UserError(f"dataset '{self.name}' has no labels; {self._no_labels_hint}")
        return self._labels

    @property
    def has_labels(self) -> bool:
        return self._labels is not None

    @property
    def channels(self) -> int:
        return int(self.images.shape[3])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        labels = f"{len(self.classes)} classes" if self.has_labels else "unlabeled"
        return (f"ImageSet('{self.name}', {len(self)} x {self.image_size}x{self.image_size}x{self.channels}, "
                f"{labels})")

    @property
    def streamed(self) -> bool:
        """Whether the images are decoded on the fly (an image folder larger than the memory budget)."""
        return isinstance(self.images, FolderImages)

    def in_memory(self) -> ImageSet:
        """This set with its images decoded into one tensor (itself when they already are)."""
        if not self.streamed:
            return self
        decoded = torch.cat(list(batches(self.images, chunks(len(self), 1024), torch.device("cpu"))))
        return ImageSet(decoded, self._labels, self.classes, self.name, no_labels_hint=self._no_labels_hint)

    def subset(self, index: torch.Tensor) -> ImageSet:
        """The images at ``index`` (indices or a bool mask), labelled iff this set is; a streamed set stays streamed."""
        index = torch.as_tensor(index)
        labels = None if self._labels is None else self._labels[index]
        images = self.images.select(index) if self.streamed else self.images[index]
        return ImageSet(images, labels, self.classes, self.name, no_labels_hint=self._no_labels_hint)

    def unlabeled(self) -> ImageSet:
        """The same images (memory shared, not copied) with no labels: what label-free search receives."""
        return ImageSet(self.images, None, self.classes, self.name, no_labels_hint=(
            "this copy was stripped of its labels for label-free search, and code that needs labels "
            "must be handed the labelled set"))

    def mean_std(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and standard deviation in [0, 1] units, from at most 10k evenly spaced images. A channel
        that never varies gets a standard deviation of 1 (normalising leaves it at 0, as scikit-learn's
        StandardScaler does); images that are all one flat colour are refused."""
        if len(self) == 0:
            raise UserError(f"dataset '{self.name}' is empty; cannot compute its mean and std")
        stride = -(-len(self) // _MEAN_STD_SAMPLE)
        sample = torch.arange(0, len(self), stride)
        total = torch.zeros(self.channels, dtype=torch.float64)
        squares = torch.zeros(self.channels, dtype=torch.float64)
        # chunks keep the float copy small; float64 sums of integers are exact (and so equal on both paths)
        for chunk in batches(self.images, [sample[i] for i in chunks(len(sample), 1000)], torch.device("cpu")):
            pixels = chunk.reshape(-1, self.channels).to(torch.float64)
            total += pixels.sum(0)
            squares += pixels.square().sum(0)
        count = len(sample) * self.image_size * self.image_size
        mean = total / count
        std = (squares / count - mean.square()).clamp_min(0).sqrt() / 255
        if bool((std == 0).all()):
            raise UserError(f"the {sample.shape[0]} images sampled from '{self.name}' are all one flat colour; there "
                            f"is nothing to learn from them, so pass the right dataset")
        return (mean / 255).tolist(), torch.where(std == 0, torch.ones_like(std), std).tolist()


# ----------------------------------------------------------------------------------------------- public API


def resolve_data_root(data_root: str) -> Path:
    """The data root: ``data_root`` if given, else $SSNAS_DATA, else ./data (made absolute)."""
    raw = data_root or os.environ.get("SSNAS_DATA", "") or "data"
    return Path(raw).expanduser().absolute()


def load_dataset(cfg: DataConfig, split: str, seed: int = 0) -> ImageSet:
    """Load ``split`` ("train" or "test") of ``cfg.dataset``; ``cfg.subset`` (drawn with ``seed``) thins "train".

    Folder datasets without a ``test/`` subfolder give, for "test", their training images with no labels,
    so that label-free evaluation works and asking for test labels is a UserError rather than a silent
    evaluation on the training images.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    data = _load_split(cfg, split)
    if split == "train":
        data = _apply_subset(data, cfg.subset, seed)
    return data


def balanced_subset_indices(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` sorted indices with (as nearly as the class sizes allow) equal counts per class.

    Leftover images (n not divisible by the class count) go one each to classes picked by ``seed``;
    classes too small for their share are taken whole and the rest spread over the others.
    """
    labels = torch.as_tensor(labels)
    if not 0 < n <= len(labels):
        raise UserError(f"--subset {n} must be between 1 and the {len(labels)} training images")
    generator = torch.Generator().manual_seed(seed)
    classes = torch.unique(labels)
    members = [torch.nonzero(labels == c).flatten() for c in classes]
    quotas = _balanced_quotas([len(m) for m in members], n, generator)
    picked = [m[torch.randperm(len(m), generator=generator)[:q]] for m, q in zip(members, quotas)]
    return torch.cat(picked).sort().values


def bilevel_split(n: int, portion: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint sorted random index sets (weight half, architecture half) of sizes round(n*portion) and rest."""
    if not 0.0 < portion < 1.0:
        raise UserError(f"--train-portion {portion} must lie strictly between 0 and 1")
    n_weights = round(n * portion)
    if n_weights == 0 or n_weights == n:
        raise UserError(f"splitting {n} training images with --train-portion {portion} leaves one part "
                        f"empty; use more images (--subset) or a portion nearer 0.5")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[:n_weights].sort().values, order[n_weights:].sort().values


# ------------------------------------------------------------------------------------------------ dispatch


def _load_split(cfg: DataConfig, split: str) -> ImageSet:
    """Pick the loader from ``cfg.dataset``: a known name first, then an .npz path, then a folder."""
    kind = _ALIASES.get(cfg.dataset.strip().lower())
    root = resolve_data_root(cfg.data_root)
    if cfg.stream not in STREAM_MODES:
        raise UserError(f"--stream must be one of {', '.join(STREAM_MODES)}, got {cfg.stream!r}")
    if kind == "fashion-mnist":
        _check_fixed_size(cfg, 28, "Fashion-MNIST")
        _check_in_memory(cfg, "Fashion-MNIST's idx files")
        return _load_fashion_mnist(root, split)
    if kind in _CIFAR:
        _check_fixed_size(cfg, 32, _CIFAR[kind][0])
        return _load_cifar(root, split, kind, cfg)
    path = Path(cfg.dataset).expanduser()
    if path.suffix.lower() == ".npz":
        if not path.is_file():
            raise UserError(f"no .npz file at {path}; pass --dataset an existing file")
        _check_in_memory(cfg, "an .npz file")
        return _load_npz(path, split, cfg)
    if path.is_dir():
        return _load_folder_dataset(path, split, cfg)
    raise UserError(f"unknown dataset '{cfg.dataset}'; use fashion-mnist, cifar10, cifar100, a folder of images, "
                    f"or an .npz file")


def _check_in_memory(cfg: DataConfig, what: str) -> None:
    if cfg.stream == "on":
        raise UserError(f"--stream on applies to image folders; {what} is read into memory whole, so use --stream "
                        f"auto or off")


def _check_fixed_size(cfg: DataConfig, native: int, display: str) -> None:
    # a silently ignored --image-size would make runs look comparable when they are not
    if cfg.image_size not in (0, native):
        raise UserError(f"--image-size {cfg.image_size} applies only to image folders; {display} images are "
                        f"{native}x{native}, so leave it at 0")


def _apply_subset(data: ImageSet, n: int, seed: int) -> ImageSet:
    if n == 0 or n == len(data):
        return data
    if not 0 < n < len(data):
        raise UserError(f"--subset {n} must be 0 (all) or between 1 and the {len(data)} training images "
                        f"of '{data.name}'")
    if data.has_labels:
        index = balanced_subset_indices(data.labels, n, seed)
    else:
        index = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return data.subset(index)


def _balanced_quotas(sizes: list[int], n: int, generator: torch.Generator) -> list[int]:
    """Water-filling: equal shares, capped at each class size, until ``n`` images are allotted."""
    quotas = [0] * len(sizes)
    remaining = n
    open_classes = [k for k, size in enumerate(sizes) if size > 0]
    while remaining > 0:
        share = remaining // len(open_classes)
        if share == 0:
            # fewer images left than classes: a seeded draw decides who gets one more
            lucky = torch.randperm(len(open_classes), generator=generator)[:remaining]
            for k in lucky.tolist():
                quotas[open_classes[k]] += 1
            break
        for k in open_classes:
            extra = min(share, sizes[k] - quotas[k])
            quotas[k] += extra
            remaining -= extra
        open_classes = [k for k in open_classes if quotas[k] < sizes[k]]
    return quotas


# ------------------------------------------------------------------------------------------- Fashion-MNIST


def _load_fashion_mnist(root: Path, split: str) -> ImageSet:
    found = _find_fashion_mnist(root, split)
    if found is not None:
        images = _read_idx(found[0], _IDX_IMAGES_MAGIC)
        labels = _read_idx(found[1], _IDX_LABELS_MAGIC)
        if len(images) != len(labels):
            raise UserError(f"{found[0]} holds {len(images)} images but {found[1]} holds {len(labels)} labels; "
                            f"re-install the Fashion-MNIST files")
        if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
            raise UserError(f"{found[1]} holds label {labels.max()}, but Fashion-MNIST has 10 classes")
        return ImageSet(torch.from_numpy(images[..., None]), torch.from_numpy(labels.astype(np.int64)),
                        FASHION_MNIST_CLASSES, "fashion-mnist")
    return _download_fashion_mnist(root, split)


def _find_fashion_mnist(root: Path, split: str) -> tuple[Path, Path] | None:
    """The (images, labels) idx files for ``split`` from the first folder that has both."""
    prefix = "train" if split == "train" else "t10k"
    for folder in (root / "fashion-mnist", root / "FashionMNIST" / "raw", SYSTEM_FASHION_MNIST):
        images = _plain_or_gz(folder / f"{prefix}-images-idx3-ubyte")
        labels = _plain_or_gz(folder / f"{prefix}-labels-idx1-ubyte")
        if images and labels:
            return images, labels
    return None


def _plain_or_gz(path: Path) -> Path | None:
    # the plain file first: torchvision keeps both, and the plain one skips decompression
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """An idx file (LeCun's MNIST format, optionally gzipped) of unsigned bytes as a numpy array."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as error:
        raise UserError(f"cannot read {path}: {error}; re-install or re-download it") from error
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found != magic:
        raise UserError(f"{path} is not an idx file of the expected kind (magic number {found}, expected "
                        f"{magic}); re-install or re-download it")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if len(data) != header + int(np.prod(dims)):
        raise UserError(f"{path} is truncated or corrupt ({len(data)} bytes for dimensions {dims}); "
                        f"re-install or re-download it")
    # copy: frombuffer over bytes is read-only, which torch.from_numpy warns about
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def _download_fashion_mnist(root: Path, split: str) -> ImageSet:
    from torchvision import datasets

    def failure(reason: str) -> UserError:
        return UserError(
            f"Fashion-MNIST not found (looked in {root / 'fashion-mnist'}/, {root / 'FashionMNIST' / 'raw'}/ "
            f"and {SYSTEM_FASHION_MNIST}/) and it could not be downloaded: {reason}; pass --data-root DIR or "
            f"set SSNAS_DATA, or run `apt-get install dataset-fashion-mnist`")

    mirror = (getattr(datasets.FashionMNIST, "mirrors", None) or [_FASHION_MNIST_MIRROR])[0]
    ds = _download(lambda: datasets.FashionMNIST(str(root), train=split == "train", download=True),
                   mirror, failure)
    images = ds.data.to(torch.uint8).unsqueeze(-1)
    return ImageSet(images, torch.as_tensor(ds.targets, dtype=torch.int64), FASHION_MNIST_CLASSES, "fashion-mnist")


# -------------------------------------------------------------------------------------------------- CIFAR


def _load_cifar(root: Path, split: str, kind: str, cfg: DataConfig) -> ImageSet:
    display, n_classes, _ = _CIFAR[kind]
    tree = root / kind / split
    if tree.is_dir():
        data = _load_image_folder(tree, DEFAULT_FOLDER_IMAGE_SIZE, kind, cfg)
        if len(data.classes) != n_classes:
            raise UserError(f"{tree} has {len(data.classes)} class folders, but {display} has {n_classes}; "
                            f"fix the tree or point --data-root elsewhere")
        return data
    _check_in_memory(cfg, f"torchvision's {display} batches")
    return _torchvision_cifar(root, split, kind)


def _torchvision_cifar(root: Path, split: str, kind: str) -> ImageSet:
    """torchvision's pickled CIFAR batches under ``root``, downloaded if missing and the network answers."""
    from torchvision import datasets

    display, _, batches = _CIFAR[kind]
    cls = datasets.CIFAR10 if kind == "cifar10" else datasets.CIFAR100
    train = split == "train"

    def failure(reason: str) -> UserError:
        return UserError(f"{display} not found under {root} (looked for {root / kind / split}/<class>/ and "
                         f"torchvision's {batches}) and it could not be downloaded: {reason}; pass --data-root "
                         f"DIR or set SSNAS_DATA")

    try:
        ds = cls(str(root), train=train, download=False)
    except RuntimeError:  # torchvision's "Dataset not found or corrupted"
        ds = _download(lambda: cls(str(root), train=train, download=True), cls.url, failure)
    except Exception as error:  # unpickling a damaged batch can fail in many ways
        raise UserError(f"cannot read {display} from {root / batches}: {_short(error)}; delete it to "
                        f"re-download, or pass --data-root DIR") from error
    images = torch.from_numpy(np.ascontiguousarray(ds.data, dtype=np.uint8))
    return ImageSet(images, torch.as_tensor(ds.targets, dtype=torch.int64), list(ds.classes), kind)


# -------------------------------------------------------------------------------------------- downloading


def _download(make: Callable[[], Any], url: str, failure: Callable[[str], UserError]) -> Any:
    """Run torchvision's download ``make`` unless ``url``'s host is unreachable; failures become ``failure``."""
    reason = _unreachable(url)
    if reason is not None:
        raise failure(reason)
    try:
        with _socket_timeout(_DOWNLOAD_SOCKET_TIMEOUT_S):
            return make()
    except Exception as error:
        raise failure(_short(error)) from error


def _unreachable(url: str, timeout: float = _NETWORK_PROBE_S) -> str | None:
    """Why ``url``'s host cannot be reached within ``timeout`` seconds, or None when it answers.

    Probed first because an offline machine whose firewall drops packets would otherwise leave
    torchvision's download hanging; the thread bounds the DNS lookup, which has no timeout of its own.
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    outcome: list[str | None] = [f"no answer from {host} within {timeout:g} s"]

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome[0] = None
        except OSError as error:
            outcome[0] = f"cannot reach {host} ({error.strerror or error})"

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0]


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    # torchvision's urllib calls have no timeout: a stalled transfer would hang forever
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _short(error: BaseException, limit: int = 200) -> str:
    """One line, at most ``limit`` characters: the CLI prints UserErrors on a single line."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------------------------------- folders


def _load_folder_dataset(folder: Path, split: str, cfg: DataConfig) -> ImageSet:
    size = cfg.image_size or DEFAULT_FOLDER_IMAGE_SIZE
    train_dir, test_dir = folder / "train", folder / "test"
    base = train_dir if train_dir.is_dir() else folder
    if split == "test" and test_dir.is_dir() and base == train_dir:
        return _load_image_folder(test_dir, size, cfg.dataset, cfg)
    data = _load_image_folder(base, size, cfg.dataset, cfg)
    if split == "train":
        return data
    return ImageSet(data.images, None, data.classes, cfg.dataset, no_labels_hint=(
        f"{folder} has no test/ subfolder, so its test split is its training images without labels; put "
        f"held-out images in {folder}/test/ and training images in {folder}/train/"))


def _load_image_folder(folder: Path, size: int, name: str, cfg: DataConfig) -> ImageSet:
    """Every image under ``folder`` at ``size`` x ``size`` RGB: streamed (`--stream`), else in memory, from the
    cache (ssnas.data.cache) when no file changed."""
    files, labels, classes = _scan_folder(folder)
    label_tensor = None if labels is None else torch.tensor(labels, dtype=torch.int64)
    paths = [path for path, _, _ in files]
    if use_streaming(cfg.stream, len(files), size, cfg.stream_above_gb):
        return ImageSet(FolderImages(paths, size, cfg.workers), label_tensor, classes, name)
    key = cache.cache_key(folder, files, size)
    path = cache.cache_path(folder, key, size)
    images = cache.read(path, key, (len(files), size, size, 3))
    if images is None:
        images = decode_files(paths, size)
        cache.write(path, key, images)
    return ImageSet(torch.from_numpy(images), label_tensor, classes, name)


File = tuple[str, int, int]  # path, size in bytes, mtime in ns: what the cache key covers


def _scan_folder(folder: Path) -> tuple[list[File], list[int] | None, list[str]]:
    """Image files, their labels (None when the images sit directly in ``folder``) and the sorted classes."""
    try:
        entries = [e for e in os.scandir(folder) if not e.name.startswith(".")]
        subdirs = sorted(e.name for e in entries if e.is_dir())
        loose = sorted(e.path for e in entries if e.is_file() and _is_image(e.name))
    except OSError as error:
        raise UserError(f"cannot list {folder}: {error.strerror or error}") from error
    if subdirs and loose:
        raise UserError(f"{folder} mixes images with subfolders; put all images in class subfolders "
                        f"(labelled) or all directly in the folder (unlabeled)")
    if loose:
        return [_file(p) for p in loose], None, []
    files: list[File] = []
    labels: list[int] = []
    seen = {_identity(folder): folder}
    for label, name in enumerate(subdirs):
        found = _images_below(folder / name, seen, (_identity(folder),))
        if not found:
            raise UserError(f"class folder {folder / name} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        files += found
        labels += [label] * len(found)
    if not files:
        raise UserError(f"no images in {folder}: expected {', '.join(IMAGE_EXTENSIONS)} files directly in it "
                        f"or in class subfolders")
    return files, labels, subdirs


def _identity(folder: Path | str) -> tuple[int, int]:
    """A folder's (device, inode), through symlinks: two paths to one folder have the same identity."""
    st = os.stat(folder)
    return st.st_dev, st.st_ino


def _file(path: str) -> File:
    st = os.stat(path)
    return path, st.st_size, st.st_mtime_ns


def _images_below(folder: Path, seen: dict[tuple[int, int], Path], ancestors: tuple[tuple[int, int], ...]
                  ) -> list[File]:
    """Every image under ``folder`` in sorted order, symlinked folders followed once: a link back to a folder
    above it (a loop), or a second path to a folder already read (an image counted twice), is refused."""
    try:
        me = _identity(folder)
        entries = sorted((e for e in os.scandir(folder) if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as error:
        raise UserError(f"cannot list {folder}: {error.strerror or error}") from error
    if me in ancestors:
        raise UserError(f"{folder} is a symlink loop: it leads back to {seen[me]}; remove the link")
    if me in seen:
        raise UserError(f"{folder} and {seen[me]} are the same folder (through a symlink), so its images would "
                        f"count twice; remove one of them")
    seen[me] = folder
    found: list[File] = []
    for entry in entries:
        try:
            if entry.is_dir():
                found += _images_below(Path(entry.path), seen, (*ancestors, me))
            elif entry.is_file() and _is_image(entry.name):
                found.append(_file(entry.path))
        except OSError as error:  # a dangling link, a file removed while listing
            raise UserError(f"cannot read {entry.path}: {error.strerror or error}") from error
    return found


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)




# ----------------------------------------------------------------------------------------------------- npz


def _load_npz(path: Path, split: str, cfg: DataConfig) -> ImageSet:
    """x_<split> (uint8, NHWC or NHW) and the optional y_<split> and classes from an .npz file."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise UserError(f"cannot read {path} as an .npz file: {_short(error)}") from error
    with archive:
        x_key, y_key = f"x_{split}", f"y_{split}"
        if x_key not in archive.files:
            raise UserError(f"{path} has no '{x_key}' array; an .npz dataset needs x_train and x_test (uint8, "
                            f"N x H x W x C or N x H x W) and may add y_train, y_test and classes")
        images = _npz_images(archive, x_key, path)
        if cfg.image_size not in (0, images.shape[1]):
            raise UserError(f"--image-size {cfg.image_size} applies only to image folders; the images in "
                            f"{path} are {images.shape[1]}x{images.shape[1]}, so leave it at 0")
        labels = _npz_labels(archive, y_key, path, len(images)) if y_key in archive.files else None
        classes = _npz_classes(archive, path)
    if labels is not None and labels.size and labels.max() >= len(classes):
        raise UserError(f"'{y_key}' in {path} holds label {labels.max()}, but 'classes' names only "
                        f"{len(classes)} classes")
    return ImageSet(torch.from_numpy(images), None if labels is None else torch.from_numpy(labels), classes,
                    cfg.dataset)


def _npz_array(archive: Any, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise UserError(f"cannot read '{key}' from {path}: {_short(error)}") from error


def _npz_images(archive: Any, key: str, path: Path) -> np.ndarray:
    x = _npz_array(archive, key, path)
    if x.ndim == 3:
        x = x[..., None]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] not in (1, 3):
        raise UserError(f"'{key}' in {path} must be uint8 with shape N x H x W x C (C 1 or 3) or N x H x W, "
                        f"got {x.dtype} {list(x.shape)}")
    if x.shape[1] != x.shape[2]:
        raise UserError(f"'{key}' in {path} holds {x.shape[1]}x{x.shape[2]} images; they must be square")
    if x.shape[1] < MIN_IMAGE_SIZE or x.shape[0] == 0:
        raise UserError(f"'{key}' in {path} holds {x.shape[0]} images of {x.shape[1]}x{x.shape[2]} pixels; a dataset "
                        f"needs images of at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE}")
    return np.ascontiguousarray(x)


def _npz_labels(archive: Any, key: str, path: Path, n: int) -> np.ndarray:
    y = _npz_array(archive, key, path)
    if not np.issubdtype(y.dtype, np.integer) or y.shape != (n,):
        raise UserError(f"'{key}' in {path} must be integers with shape [{n}] (one per image), got {y.dtype} "
                        f"{list(y.shape)}")
    if y.size and y.min() < 0:
        raise UserError(f"'{key}' in {path} holds the negative label {y.min()}; labels must be 0..classes-1")
    return y.astype(np.int64)


def _npz_classes(archive: Any, path: Path) -> list[str]:
    """The 'classes' array if present, else "0".."K-1" with K from the largest label of either split."""
    if "classes" in archive.files:
        names = _npz_array(archive, "classes", path)
        if names.ndim != 1:
            raise UserError(f"'classes' in {path} must be a 1-D array of names, got shape {list(names.shape)}")
        return [str(c) for c in names.tolist()]
    largest = -1
    for key in ("y_train", "y_test"):
        if key in archive.files:
            y = _npz_array(archive, key, path)
            if y.size and np.issubdtype(y.dtype, np.integer):
                largest = max(largest, int(y.max()))
    return [str(k) for k in range(largest + 1)]


def visible_labels(train: ImageSet, policy: str, fraction: float, seed: int) -> torch.Tensor | None:
    """The labels an objective may see: none, all, or a class-balanced fraction with the rest set to -1
    (SuNCEt's setting: a few labelled images among unlabelled ones)."""
    if policy == "none":
        return None
    labels = train.labels
    if policy == "all":
        return labels
    if not 0 < fraction <= 1:
        raise UserError(f"--labels-fraction must be in (0, 1], got {fraction}")
    keep = balanced_subset_indices(labels, max(len(train.classes), round(fraction * len(train))), seed)
    masked = torch.full_like(labels, -1)
    masked[keep] = labels[keep]
    return masked
