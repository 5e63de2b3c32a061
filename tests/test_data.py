"""Tests for ssnas.data on real data: Fashion-MNIST (Debian's idx files) and CIFAR-10 (the shared JPEG tree)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssnas.data.datasets import (
    FASHION_MNIST_CLASSES,
    SYSTEM_FASHION_MNIST,
    DataConfig,
    ImageSet,
    balanced_subset_indices,
    bilevel_split,
    load_dataset,
    resolve_data_root,
)
from ssnas.errors import UserError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared/data"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _cifar_root() -> Path:
    """The first of $SSNAS_DATA and ../shared/data that holds the CIFAR-10 tree, else skip."""
    candidates = [Path(os.environ["SSNAS_DATA"])] if os.environ.get("SSNAS_DATA") else []
    for root in [*candidates, SHARED_DATA]:
        if (root / "cifar10" / "test").is_dir():
            return root
    pytest.skip(f"no CIFAR-10 tree (cifar10/test/<class>/) under $SSNAS_DATA or {SHARED_DATA}")


@pytest.fixture(scope="module")
def fashion_full(tmp_path_factory: pytest.TempPathFactory) -> ImageSet:
    if not any(SYSTEM_FASHION_MNIST.glob("train-images-idx3-ubyte*")):
        pytest.skip(f"Fashion-MNIST idx files absent from {SYSTEM_FASHION_MNIST} (apt-get install "
                    f"dataset-fashion-mnist)")
    # an empty data root makes the loader fall through to the system copy
    empty_root = tmp_path_factory.mktemp("empty-root")
    return load_dataset(DataConfig(dataset="fashion-mnist", data_root=str(empty_root)), "train")


@pytest.fixture()
def user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private $SSNAS_CACHE so that tests neither read nor leave caches in the user's home."""
    cache = tmp_path / "ssnas-cache"
    monkeypatch.setenv("SSNAS_CACHE", str(cache))
    return cache


def _write_png(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (40, 30), mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).convert(mode).save(path)


# ------------------------------------------------------------------------------------------- Fashion-MNIST


def test_fashion_mnist_train_shape_and_labels(fashion_full: ImageSet) -> None:
    assert fashion_full.images.shape == (60000, 28, 28, 1)
    assert fashion_full.images.dtype == torch.uint8 and fashion_full.images.is_contiguous()
    assert fashion_full.labels.dtype == torch.int64
    assert int(fashion_full.labels.min()) == 0 and int(fashion_full.labels.max()) == 9
    assert torch.bincount(fashion_full.labels).tolist() == [6000] * 10
    assert fashion_full.classes == FASHION_MNIST_CLASSES
    assert (fashion_full.channels, fashion_full.image_size) == (1, 28)
    # real pictures, not zeros: Fashion-MNIST's mean is about 0.286
    mean, std = fashion_full.mean_std()
    assert mean[0] == pytest.approx(0.286, abs=0.01) and std[0] == pytest.approx(0.353, abs=0.01)


def test_fashion_mnist_subset_is_balanced_and_deterministic(fashion_full: ImageSet, tmp_path: Path) -> None:
    cfg = DataConfig(dataset="fashion-mnist", data_root=str(tmp_path), subset=1000)
    first = load_dataset(cfg, "train", seed=3)
    assert len(first) == 1000 and torch.bincount(first.labels).tolist() == [100] * 10
    # the same draw as subsetting the full set by hand: deterministic for a seed, different across seeds
    index = balanced_subset_indices(fashion_full.labels, 1000, seed=3)
    assert torch.equal(first.images, fashion_full.images[index])
    assert torch.equal(first.labels, fashion_full.labels[index])
    assert not torch.equal(index, balanced_subset_indices(fashion_full.labels, 1000, seed=4))
    test = load_dataset(cfg, "test")  # the subset thins only the training split
    assert test.images.shape == (10000, 28, 28, 1)


def test_corrupt_idx_file_is_a_user_error(tmp_path: Path) -> None:
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte").write_bytes((1234).to_bytes(4, "big") + bytes(100))
    (folder / "train-labels-idx1-ubyte").write_bytes((2049).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes(3))
    with pytest.raises(UserError, match="magic number 1234"):
        load_dataset(DataConfig(dataset="fashion-mnist", data_root=str(tmp_path)), "train")
    # right magic number, too few bytes for the stated 5 x 28 x 28
    header = b"".join(v.to_bytes(4, "big") for v in (2051, 5, 28, 28))
    (folder / "train-images-idx3-ubyte").write_bytes(header + bytes(28 * 28))
    with pytest.raises(UserError, match="truncated"):
        load_dataset(DataConfig(dataset="fashion-mnist", data_root=str(tmp_path)), "train")


# ------------------------------------------------------------------------------------------------ CIFAR-10


@pytest.mark.slow
def test_cifar10_test_split_decodes_once_then_hits_the_cache(user_cache: Path, monkeypatch) -> None:
    import ssnas.data.datasets as data_module

    decoded: list[int] = []
    real_decode = data_module.decode_files

    def counting_decode(files, size):
        decoded.append(len(files))
        return real_decode(files, size)

    monkeypatch.setattr(data_module, "decode_files", counting_decode)
    root = _cifar_root()
    cfg = DataConfig(dataset="cifar10", data_root=str(root))
    data = load_dataset(cfg, "test")

    assert decoded == [10000], "the cold load must decode every image exactly once"
    assert data.images.shape == (10000, 32, 32, 3) and data.images.dtype == torch.uint8
    assert data.classes == CIFAR10_CLASSES
    assert torch.bincount(data.labels).tolist() == [1000] * 10
    first_airplane = sorted((root / "cifar10/test/airplane").iterdir())[0]
    assert np.array_equal(data.images[0].numpy(), np.asarray(Image.open(first_airplane).convert("RGB")))
    mean, _ = data.mean_std()
    assert mean == pytest.approx([0.49, 0.48, 0.45], abs=0.02)

    caches = list(user_cache.glob("cifar10-test-*.npz"))
    assert caches, "the decoded images were not cached"
    stamps = {p: p.stat().st_mtime_ns for p in caches}
    again = load_dataset(cfg, "test")
    # counted, not timed: a warm load decodes nothing, whatever else the machine is doing
    assert decoded == [10000], "a cache hit must not decode any image again"
    assert torch.equal(again.images, data.images) and torch.equal(again.labels, data.labels)
    assert {p: p.stat().st_mtime_ns for p in caches} == stamps, "a cache hit must not rewrite the cache"


@pytest.mark.timeout(120)  # an offline download attempt must fail, not hang: the network probe is bounded
def test_missing_cifar100_fails_fast_naming_data_root(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--data-root") as error:
        load_dataset(DataConfig(dataset="cifar100", data_root=str(tmp_path)), "train")
    assert "CIFAR-100" in str(error.value) and "\n" not in str(error.value)


def test_unknown_dataset_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown dataset 'imagenet'"):
        load_dataset(DataConfig(dataset="imagenet", data_root=str(tmp_path)), "train")
    with pytest.raises(UserError, match="--image-size"):
        load_dataset(DataConfig(dataset="cifar10", data_root=str(tmp_path), image_size=64), "train")


# ------------------------------------------------------------------------------------ subsets and splits


def test_balanced_subset_indices_exact_counts() -> None:
    labels = torch.arange(10).repeat_interleave(100)[torch.randperm(1000, generator=torch.Generator().manual_seed(0))]
    index = balanced_subset_indices(labels, 250, seed=1)
    assert torch.bincount(labels[index]).tolist() == [25] * 10
    assert torch.equal(index, index.sort().values) and len(index.unique()) == 250
    assert torch.equal(index, balanced_subset_indices(labels, 250, seed=1))
    assert not torch.equal(index, balanced_subset_indices(labels, 250, seed=2))
    # a class too small for its share is taken whole and the rest spread over the others
    uneven = torch.tensor([0] * 100 + [1] * 50 + [2] * 3)
    counts = torch.bincount(uneven[balanced_subset_indices(uneven, 60, seed=0)]).tolist()
    assert counts[2] == 3 and sum(counts) == 60 and sorted(counts[:2]) == [28, 29]
    with pytest.raises(UserError):
        balanced_subset_indices(uneven, 154, seed=0)


def test_bilevel_split_disjoint_and_covering() -> None:
    weights, arch = bilevel_split(101, 0.5, seed=0)
    assert (len(weights), len(arch)) == (round(101 * 0.5), 101 - round(101 * 0.5))
    assert not set(weights.tolist()) & set(arch.tolist())
    assert torch.equal(torch.cat([weights, arch]).sort().values, torch.arange(101))
    assert torch.equal(weights, bilevel_split(101, 0.5, seed=0)[0])
    assert not torch.equal(weights, bilevel_split(101, 0.5, seed=1)[0])
    assert len(bilevel_split(10, 0.8, seed=0)[0]) == 8
    for n, portion in [(1, 0.5), (10, 0.0), (10, 1.0), (10, 0.01)]:
        with pytest.raises(UserError):
            bilevel_split(n, portion, seed=0)


def test_unlabeled_copy_hides_labels() -> None:
    images = torch.randint(0, 256, (6, 4, 4, 3), dtype=torch.uint8)
    data = ImageSet(images, torch.tensor([0, 1, 2, 0, 1, 2]), ["a", "b", "c"], "toy")
    blind = data.unlabeled()
    assert data.has_labels and not blind.has_labels
    with pytest.raises(UserError, match="dataset 'toy' has no labels"):
        _ = blind.labels
    assert torch.equal(blind.images, images) and len(blind) == 6
    part = data.subset(torch.tensor([1, 4]))
    assert part.labels.tolist() == [1, 1] and torch.equal(part.images, images[[1, 4]])
    with pytest.raises(UserError):
        _ = blind.subset(torch.tensor([0])).labels


def test_mean_std_in_unit_range() -> None:
    images = torch.zeros(4, 2, 2, 3, dtype=torch.uint8)
    images[:2] = 255
    images[..., 2] = 51
    mean, std = ImageSet(images, None, [], "toy").mean_std()
    # the blue channel never varies: its std is 1 (normalising leaves it at 0) rather than a division by zero
    assert mean == pytest.approx([0.5, 0.5, 0.2]) and std == pytest.approx([0.5, 0.5, 1.0], abs=1e-6)


def test_images_of_one_flat_colour_are_refused() -> None:
    """Regression: a dataset of one flat colour ended in ViewMaker's `std must be positive` traceback."""
    with pytest.raises(UserError, match="one flat colour"):
        ImageSet(torch.full((6, 4, 4, 3), 77, dtype=torch.uint8), None, [], "flat").mean_std()


# ------------------------------------------------------------------------------------------------- .npz


def test_npz_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    y_train = np.arange(20) % 4
    x_test = rng.integers(0, 256, (6, 8, 8), dtype=np.uint8)  # N x H x W: greyscale, and no y_test
    path = tmp_path / "toy.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test)

    train = load_dataset(DataConfig(dataset=str(path)), "train")
    assert np.array_equal(train.images.numpy(), x_train) and train.labels.tolist() == y_train.tolist()
    assert train.classes == ["0", "1", "2", "3"]
    test = load_dataset(DataConfig(dataset=str(path)), "test")
    assert test.images.shape == (6, 8, 8, 1) and np.array_equal(test.images[..., 0].numpy(), x_test)
    with pytest.raises(UserError, match="no labels"):
        _ = test.labels
    subset = load_dataset(DataConfig(dataset=str(path), subset=8), "train", seed=0)
    assert torch.bincount(subset.labels).tolist() == [2] * 4


@pytest.mark.parametrize("arrays, key", [
    ({"x_train": np.zeros((4, 8, 8, 3), np.float32), "x_test": np.zeros((2, 8, 8, 3), np.uint8)}, "x_train"),
    ({"x_train": np.zeros((4, 8, 8, 3), np.uint8), "y_train": np.zeros(3, np.int64)}, "y_train"),
    ({"x_train": np.zeros((4, 8, 6, 3), np.uint8)}, "x_train"),
    ({"y_train": np.zeros(4, np.int64)}, "x_train"),
    ({"x_train": np.zeros((4, 0, 0, 3), np.uint8)}, "x_train"),  # regression: 0x0 images -> ZeroDivisionError
    ({"x_train": np.zeros((0, 8, 8, 3), np.uint8)}, "x_train"),
])
def test_malformed_npz_names_the_key(tmp_path: Path, arrays: dict[str, np.ndarray], key: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(UserError, match=f"'{key}'"):
        load_dataset(DataConfig(dataset=str(path)), "train")


def test_npz_without_test_split_names_x_test(tmp_path: Path) -> None:
    path = tmp_path / "train-only.npz"
    np.savez(path, x_train=np.zeros((4, 8, 8, 3), np.uint8))
    with pytest.raises(UserError, match="'x_test'"):
        load_dataset(DataConfig(dataset=str(path)), "test")


# ---------------------------------------------------------------------------------------------- folders


def test_folder_with_class_subfolders(tmp_path: Path, user_cache: Path) -> None:
    folder = tmp_path / "shapes"
    for i in range(3):
        _write_png(folder / "red" / f"{i}.png", (255, 0, 0))
        _write_png(folder / "blue" / f"{i}.jpg", (0, 0, 255), size=(20, 50))
    _write_png(folder / "blue" / "grey.png", (0, 0, 255), mode="L")  # greyscale becomes RGB
    (folder / "red" / "notes.txt").write_text("not an image")

    cfg = DataConfig(dataset=str(folder), data_root=str(tmp_path / "root"), image_size=16)
    data = load_dataset(cfg, "train")
    assert data.images.shape == (7, 16, 16, 3) and data.classes == ["blue", "red"]
    assert data.labels.tolist() == [0, 0, 0, 0, 1, 1, 1]
    red = data.images[data.labels == 1].to(torch.int16)
    assert (red[..., 0] > 250).all() and (red[..., 1:] < 5).all()
    blue = data.images[:3].to(torch.int16)
    assert (blue[..., 2] > 240).all() and (blue[..., :2] < 15).all()
    assert (data.images[3].to(torch.int16) - 29).abs().max() <= 1  # the greyscale one: L = 0.114 * 255
    # no test/ subfolder: the test split is the same images, and asking for its labels is an error
    test = load_dataset(cfg, "test")
    assert torch.equal(test.images, data.images)
    with pytest.raises(UserError, match="test/"):
        _ = test.labels


def test_flat_folder_is_unlabeled(tmp_path: Path, user_cache: Path) -> None:
    for i in range(4):
        _write_png(tmp_path / "flat" / f"{i}.png", (10 * i, 0, 0), size=(32, 32))
    cfg = DataConfig(dataset=str(tmp_path / "flat"), data_root=str(tmp_path / "root"), subset=2)
    data = load_dataset(cfg, "train", seed=0)
    assert data.images.shape == (2, 32, 32, 3) and not data.has_labels
    with pytest.raises(UserError, match="has no labels"):
        _ = data.labels


def test_folder_train_test_layout_and_cache_invalidation(tmp_path: Path, user_cache: Path) -> None:
    folder, root = tmp_path / "pets", tmp_path / "root"
    root.mkdir()
    for split, n in [("train", 3), ("test", 2)]:
        for cls in ("cat", "dog"):
            for i in range(n):
                _write_png(folder / split / cls / f"{i}.png", (0, 200, 0))
    cfg = DataConfig(dataset=str(folder), data_root=str(root))
    assert len(load_dataset(cfg, "train")) == 6
    test = load_dataset(cfg, "test")
    assert len(test) == 4 and test.labels.tolist() == [0, 0, 1, 1]
    # the cache lives in the cache directory, never beside the data
    assert len(list(user_cache.glob("*.npz"))) == 2 and not any(p.name.startswith(".ssnas") for p in root.iterdir())

    _write_png(folder / "train" / "dog" / "extra.png", (0, 200, 0))
    grown = load_dataset(cfg, "train")
    assert len(grown) == 7 and grown.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]


def test_read_only_data_folder_is_never_written(tmp_path: Path, user_cache: Path) -> None:
    root = tmp_path / "readonly"
    _write_png(root / "faces" / "a" / "0.png", (1, 2, 3))
    _write_png(root / "faces" / "a" / "1.png", (3, 2, 1))
    before = sorted(str(p) for p in root.rglob("*"))
    root.chmod(0o555)  # marked read-only: even root, who could write, must leave it alone
    (root / "faces").chmod(0o555)
    try:
        load_dataset(DataConfig(dataset=str(root / "faces"), data_root=str(root)), "train")
        assert sorted(str(p) for p in root.rglob("*")) == before
        assert len(list(user_cache.glob("*.npz"))) == 1
    finally:
        (root / "faces").chmod(0o755)
        root.chmod(0o755)


def _count_decodes(monkeypatch) -> list[int]:
    import ssnas.data.datasets as data_module

    decoded: list[int] = []
    real_decode = data_module.decode_files
    monkeypatch.setattr(data_module, "decode_files", lambda files, size: decoded.append(len(files)) or
                        real_decode(files, size))
    return decoded


def test_rewritten_images_are_decoded_again(tmp_path: Path, user_cache: Path, monkeypatch) -> None:
    """Regression: all images overwritten with white still loaded the old pixels (the key held only the names)."""
    decoded = _count_decodes(monkeypatch)
    folder = tmp_path / "pics"
    for i in range(3):
        _write_png(folder / "a" / f"{i}.png", (10, 20, 30 + i), size=(8, 8))
    cfg = DataConfig(dataset=str(folder), image_size=8)
    first = load_dataset(cfg, "train")
    assert load_dataset(cfg, "train").images.equal(first.images) and decoded == [3]  # the cache is used
    for i in range(3):
        _write_png(folder / "a" / f"{i}.png", (255, 255, 255), size=(8, 8))  # same names, same sizes
        os.utime(folder / "a" / f"{i}.png", ns=(1, 10**18 + i))  # a new mtime, whatever the clock's resolution
    white = load_dataset(cfg, "train")
    assert decoded == [3, 3] and bool((white.images == 255).all())


def test_symlink_loops_and_doubled_folders_are_refused(tmp_path: Path, user_cache: Path) -> None:
    """Regression: a symlink loop in a class folder turned 80 images into 1,680."""
    folder = tmp_path / "loop"
    for c in ("a", "b"):
        for i in range(2):
            _write_png(folder / c / f"{i}.png", (i, 0, 0), size=(8, 8))
    os.symlink(folder / "a", folder / "a" / "again")
    with pytest.raises(UserError, match="symlink loop"):
        load_dataset(DataConfig(dataset=str(folder)), "train")
    os.unlink(folder / "a" / "again")
    os.symlink(folder / "a", folder / "b" / "more")  # not a loop, but a's images would count twice
    with pytest.raises(UserError, match="same folder"):
        load_dataset(DataConfig(dataset=str(folder)), "train")
    os.unlink(folder / "b" / "more")
    outside = tmp_path / "outside"
    _write_png(outside / "0.png", (9, 9, 9), size=(8, 8))
    os.symlink(outside, folder / "b" / "linked")  # a link out of the tree is followed, once
    data = load_dataset(DataConfig(dataset=str(folder), image_size=8), "train")
    assert len(data) == 5 and data.labels.tolist() == [0, 0, 1, 1, 1]


def test_cache_directory_follows_ssnas_cache_then_xdg(tmp_path: Path, monkeypatch) -> None:
    from ssnas.data.cache import cache_dir

    monkeypatch.setenv("SSNAS_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert cache_dir() == tmp_path / "a"
    monkeypatch.delenv("SSNAS_CACHE")
    assert cache_dir() == tmp_path / "b" / "ssnas"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "ssnas"


def test_resolve_data_root_and_help(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SSNAS_DATA", str(tmp_path))
    assert resolve_data_root("") == tmp_path
    assert resolve_data_root(str(tmp_path / "x")) == tmp_path / "x"
    monkeypatch.delenv("SSNAS_DATA")
    monkeypatch.chdir(tmp_path)
    assert resolve_data_root("") == tmp_path / "data"
    from dataclasses import fields
    assert all(f.metadata.get("help") for f in fields(DataConfig))
