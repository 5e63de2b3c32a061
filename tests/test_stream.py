"""Image folders streamed from disk (decoded batch by batch in worker processes) against the in-memory cache: the same
pixels, the same statistics, the same batches in the same order, and so the same search and retrain, bit for bit."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from ssnas.cli import main
from ssnas.config import apply_overrides
from ssnas.data.datasets import DataConfig, load_dataset
from ssnas.data.stream import FolderImages, batches, chunks, use_streaming
from ssnas.errors import UserError
from tests.conftest import requires_fashion, tiny_search_config


@pytest.fixture(scope="module")
def folder(tmp_path_factory, fashion_train):
    """60 real Fashion-MNIST images as an image folder: 48 in train/, 12 in test/, 3 classes, PNGs and JPEGs,
    28x28 (resized on loading)."""
    root = tmp_path_factory.mktemp("folder")
    tree = root / "fm"
    for i in range(60):
        label = int(fashion_train.labels[i]) % 3
        where = tree / ("train" if i < 48 else "test") / f"class{label}"
        where.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(fashion_train.images[i, ..., 0].numpy()).convert("RGB")
        image.save(where / f"{i:02d}.{'png' if i % 2 else 'jpg'}")
    return tree


def _data(folder, stream: str, **overrides) -> DataConfig:
    return apply_overrides(DataConfig(), {"dataset": str(folder), "data_root": str(folder.parent), "image_size": 20,
                                          "stream": stream, "workers": 2, **overrides})


@pytest.mark.slow
@requires_fashion
def test_both_paths_hold_the_same_images_labels_and_statistics(folder):
    memory = load_dataset(_data(folder, "off"), "train")
    streamed = load_dataset(_data(folder, "on"), "train")
    assert not memory.streamed and streamed.streamed and isinstance(streamed.images, FolderImages)
    assert streamed.images.shape == tuple(memory.images.shape) == (48, 20, 20, 3)
    assert streamed.classes == memory.classes and torch.equal(streamed.labels, memory.labels)
    assert torch.equal(streamed.images[:], memory.images)  # decoded here, in this process
    assert streamed.mean_std() == memory.mean_std()  # exact: float64 sums of the same integers
    index = torch.tensor([5, 0, 47, 5])
    part = streamed.subset(index)
    assert part.streamed and torch.equal(part.images[:], memory.images[index])  # a subset stays lazy
    assert torch.equal(streamed.in_memory().images, memory.images)


@requires_fashion
def test_batches_come_in_the_order_asked_from_worker_processes(folder):
    memory = load_dataset(_data(folder, "off"), "train")
    streamed = load_dataset(_data(folder, "on"), "train")
    order = torch.randperm(48, generator=torch.Generator().manual_seed(3))
    wanted = [order[i:i + 7] for i in range(0, 42, 7)]
    cpu = torch.device("cpu")
    got = list(batches(streamed.images, wanted, cpu))
    assert len(got) == len(wanted)
    for index, batch in zip(wanted, got):
        assert torch.equal(batch, memory.images[index])
    assert all(torch.equal(a, b) for a, b in zip(got, batches(memory.images, wanted, cpu)))
    before = torch.get_rng_state()
    list(batches(streamed.images, chunks(48, 16), cpu))
    assert torch.equal(torch.get_rng_state(), before)  # the loop's global draws (drop-path) are left alone


def test_auto_streams_only_what_would_not_fit_and_bad_settings_are_one_line():
    cifar = 50_000  # CIFAR-10 at 32x32: 150 MB decoded, in memory
    assert not use_streaming("auto", cifar, 32, 8.0)
    assert use_streaming("auto", 1_281_167, 224, 8.0)  # ImageNet's training set at 224: 180 GiB
    assert use_streaming("auto", cifar, 32, 0.1) and use_streaming("on", 10, 8, 8.0)
    assert not use_streaming("off", 1_281_167, 224, 8.0)
    with pytest.raises(UserError, match="--stream must be one of auto, on, off"):
        use_streaming("always", 10, 8, 8.0)
    with pytest.raises(UserError, match="--stream-above-gb must be positive"):
        use_streaming("auto", 10, 8, 0.0)
    with pytest.raises(UserError, match="--workers must be >= 0"):
        FolderImages(["a.png"], 8, workers=-1)


@requires_fashion
def test_stream_on_is_refused_for_sets_that_are_read_whole():
    with pytest.raises(UserError, match="--stream on applies to image folders; Fashion-MNIST's idx files"):
        load_dataset(DataConfig(dataset="fashion-mnist", data_root="/nonexistent-root", stream="on"), "train")


# ---- the loops: same batches, same result -------------------------------------------------------------------

@pytest.mark.slow
@requires_fashion
def test_search_streamed_equals_search_in_memory(folder, tmp_path):
    from ssnas.search import run_search

    results = {}
    for stream in ("off", "on"):
        out = tmp_path / stream
        cfg = tiny_search_config(out, **{"data.dataset": str(folder), "data.data_root": str(folder.parent),
                                         "data.subset": 0, "data.image_size": 20, "data.stream": stream,
                                         "data.workers": 2, "optim.epochs": 2, "optim.steps_per_epoch": 3})
        result = run_search(cfg)
        steps = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
        results[stream] = (result.genotype, json.loads((out / "alphas.json").read_text()),
                           [(r["kind"], r.get("loss"), r.get("arch_loss")) for r in steps])
    assert results["on"] == results["off"]  # every loss of every step, the alphas and the genotype, exactly


@pytest.mark.slow
@requires_fashion
def test_retrain_streamed_equals_retrain_in_memory_and_resumes_across_paths(folder, tmp_path):
    from ssnas.retrain import run_retrain
    from ssnas.runs.checkpoint import load
    from tests.test_retrain import tiny_retrain_config

    def config(out, stream, **more):
        return tiny_retrain_config(out, **{"data.dataset": str(folder), "data.data_root": str(folder.parent),
                                           "data.subset": 0, "data.image_size": 20, "data.stream": stream,
                                           "data.workers": 2, "knn.every": 0, "network.drop_path": 0.3,
                                           "run.tensorboard": False, **more})

    run_retrain(config(tmp_path / "off", "off"))
    run_retrain(config(tmp_path / "on", "on", **{"run.stop_after": 1}))
    run_retrain(config(tmp_path / "on", "off", **{"run.resume": True}))  # the path may change on resume
    a, b = load(tmp_path / "off" / "checkpoint.pt"), load(tmp_path / "on" / "checkpoint.pt")
    assert a["epochs_done"] == b["epochs_done"] == 2
    for key, value in a["encoder"].items():  # drop-path masks included: the global RNG is the loop's alone
        assert torch.equal(value, b["encoder"][key]), key


@pytest.mark.slow
@requires_fashion
def test_cli_streams_a_folder_and_eval_reads_it_streamed(folder, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["--dataset", str(folder), "--data-root", str(folder.parent), "--image-size", "20", "--stream", "on",
            "--workers", "2", "--device", "cpu", "--no-progress", "--no-tensorboard"]
    assert main(["retrain", "--arch", "DARTS_V1", "--layers", "3", "--init-channels", "4", "--epochs", "1",
                 "--batch-size", "8", "--steps-per-epoch", "2", "--warmup-epochs", "0", "--proj-dim", "8",
                 "--knn-every", "0", "--out", str(out), *base]) == 0
    assert main(["eval", str(out), "--protocol", "knn", *base]) == 0
    record = json.loads((out / "eval-knn.json").read_text())
    assert record["n_train"] == 48 and record["n_test"] == 12 and 0 <= record["accuracy"] <= 1
