"""Shared fixtures: real data locations and tiny configurations."""
from __future__ import annotations

import os
from pathlib import Path

# One intra-op thread per test process (and per subprocess a test starts): tiny tests gain nothing from a
# second thread, and on a busy 2-core machine two OpenMP threads waiting on each other make a test 5-20x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def shared_data_root() -> Path | None:
    """The CIFAR-10 ImageFolder tree beside the checkout (../shared/data), or $SSNAS_DATA."""
    for candidate in (os.environ.get("SSNAS_DATA"), ROOT.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "cifar10" / "train").is_dir():
            return Path(candidate)
    return None


requires_fashion = pytest.mark.skipif(not FASHION_DIR.is_dir(),
                                      reason="Fashion-MNIST missing: apt-get install dataset-fashion-mnist")
requires_cifar = pytest.mark.skipif(shared_data_root() is None, reason="no CIFAR-10 tree under ../shared/data or $SSNAS_DATA")


@pytest.fixture(autouse=True)
def _small_torch():
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def fashion_train():
    """400 real Fashion-MNIST training images (class-balanced), loaded once per session."""
    if not FASHION_DIR.is_dir():
        pytest.skip("Fashion-MNIST missing: apt-get install dataset-fashion-mnist")
    from ssnas.data.datasets import DataConfig, load_dataset

    return load_dataset(DataConfig(dataset="fashion-mnist", data_root="/nonexistent-root", subset=400), "train", seed=0)


def tiny_search_config(out: Path, **overrides):
    """A supernet that runs a step in well under a second on 2 cores."""
    from ssnas.config import apply_overrides
    from ssnas.search import SearchConfig

    cfg = SearchConfig()
    apply_overrides(cfg, {
        "data.dataset": "fashion-mnist", "data.subset": 64, "supernet.layers": 3, "supernet.init_channels": 4,
        "supernet.nodes": 2, "optim.epochs": 2, "optim.batch_size": 8, "optim.steps_per_epoch": 2,
        "objective.proj_dim": 16, "run.out": str(out), "run.progress": False, "run.device": "cpu",
        "run.log_every": 1, "augment.size": 16, **overrides})
    return cfg
