import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from ssnas.config import apply_overrides
from ssnas.data.datasets import ImageSet
from ssnas.errors import UserError
from ssnas.runs import checkpoint
from ssnas.search import Searcher, run_search
from tests.conftest import ROOT, same_supernet_weights, tiny_search_config


class LabelTrap(ImageSet):
    """A real dataset whose labels explode on access: proves label-free search never reads them."""

    @property
    def labels(self):
        raise AssertionError("the search read a label")

    def unlabeled(self):
        return LabelTrap(self.images, None, self.classes, self.name)


def _metrics(out):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("time"), row.pop("images_per_s", None), row.pop("seconds", None)
    return rows


@pytest.mark.slow
def test_loss_decreases_on_a_fixed_batch(tmp_path, fashion_train):
    cfg = tiny_search_config(tmp_path)
    mean, std = fashion_train.mean_std()
    searcher = Searcher(cfg, 1, mean, std, torch.device("cpu"))
    images = fashion_train.images[:16]
    batch = searcher.make_batch(images, torch.arange(16), torch.Generator().manual_seed(0))
    losses = [float(searcher.weight_step(batch, 0.0)["loss"].detach()) for _ in range(30)]
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses


@pytest.mark.slow
def test_search_writes_every_promised_output(tmp_path, fashion_train):
    result = run_search(tiny_search_config(tmp_path / "run"), fashion_train)
    out = tmp_path / "run"
    for name in ("genotype.json", "alphas.json", "metrics.jsonl", "config.json", "checkpoint.pt", "genotypes.jsonl"):
        assert (out / name).is_file(), name
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    genotype = json.loads((out / "genotype.json").read_text())
    assert genotype["space"] == "darts" and len(genotype["normal"]) == 4  # 2 nodes x 2 inputs
    assert genotype["meta"]["objective"] == "simclr"
    assert result.genotype.to_json()["normal"] == genotype["normal"]
    alphas = json.loads((out / "alphas.json").read_text())
    assert abs(sum(alphas["normal"]["0->2"].values()) - 1) < 1e-6
    epochs = [row for row in _metrics(out) if row["kind"] == "epoch"]
    assert 0 <= epochs[-1]["parameter_free_share"] <= 1 and 0 < epochs[-1]["entropy_normal_norm"] <= 1
    kinds = [row["kind"] for row in _metrics(out)]
    assert kinds.count("epoch") == 2 and kinds.count("step") == 4
    assert len((out / "genotypes.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
def test_resume_equals_uninterrupted(tmp_path, fashion_train):
    straight = run_search(tiny_search_config(tmp_path / "a", **{"optim.epochs": 3}), fashion_train)
    first = run_search(tiny_search_config(tmp_path / "b", **{"optim.epochs": 3, "run.stop_after": 1}), fashion_train)
    assert not first.finished
    resumed = run_search(tiny_search_config(tmp_path / "b", **{"optim.epochs": 3, "run.resume": True}), fashion_train)
    assert resumed.finished and resumed.epochs_run == 2
    assert resumed.genotype == straight.genotype
    assert same_supernet_weights(tmp_path / "a", tmp_path / "b")
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")


@pytest.mark.slow
def test_labels_are_never_read(tmp_path, fashion_train):
    trap = LabelTrap(fashion_train.images, fashion_train.labels, fashion_train.classes, "fashion-mnist")
    result = run_search(tiny_search_config(tmp_path, **{"optim.epochs": 1}), trap)
    assert result.finished
    with pytest.raises(AssertionError):
        trap.labels  # the trap does fire when touched


def test_second_order_search_runs_and_moves_the_alphas(tmp_path, fashion_train):
    cfg = tiny_search_config(tmp_path, **{"optim.order": 2, "optim.epochs": 1, "optim.steps_per_epoch": 1,
                                          "supernet.nodes": 1})
    torch.manual_seed(cfg.run.seed)  # run_search seeds the same way before it builds the supernet
    start = {k: v.clone() for k, v in Searcher(cfg, 1, [0.5], [0.5], torch.device("cpu")).supernet.alphas().items()}
    run_search(cfg, fashion_train)
    state = checkpoint.load(tmp_path / "checkpoint.pt")["searcher"]
    adam = state["opt_a"]["state"]
    # the unrolled gradient reached every alpha tensor (zero gradients would also give Adam a state)...
    assert len(adam) == 2 and all(s["exp_avg"].abs().max() > 0 for s in adam.values())
    # ... and the step moved them
    for kind, before in start.items():
        after = state["supernet"][f"alphas_{kind}"]
        assert after.shape == before.shape and not torch.equal(after, before), kind


@pytest.mark.slow
def test_refuses_to_overwrite_and_checks_resume_settings(tmp_path, fashion_train):
    run_search(tiny_search_config(tmp_path, **{"optim.epochs": 1}), fashion_train)
    with pytest.raises(UserError, match="--resume"):
        run_search(tiny_search_config(tmp_path, **{"optim.epochs": 1}), fashion_train)
    with pytest.raises(UserError, match="optim.momentum"):
        run_search(tiny_search_config(tmp_path, **{"optim.epochs": 1, "optim.momentum": 0.5, "run.resume": True}),
                   fashion_train)


def test_nan_loss_is_a_one_line_error(tmp_path, fashion_train):
    cfg = tiny_search_config(tmp_path, **{"optim.lr": 1e30, "optim.grad_clip": 0.0, "optim.epochs": 1,
                                          "optim.steps_per_epoch": 4})
    with pytest.raises(UserError, match="loss became") as e:
        run_search(cfg, fashion_train)
    assert "\n" not in str(e.value)


@pytest.mark.slow
def test_a_killed_search_resumes_to_the_same_genotype(tmp_path):
    """SIGKILL a real `ssnas search` in its second epoch, resume it, compare with an uninterrupted run."""
    args = ["--dataset", "fashion-mnist", "--subset", "96", "--layers", "3", "--init-channels", "4",
            "--nodes", "2", "--epochs", "3", "--batch-size", "8", "--steps-per-epoch", "3", "--proj-dim", "16",
            "--view-size", "16", "--no-progress", "--device", "cpu", "--log-every", "1"]
    cmd = [sys.executable, "-m", "ssnas.cli", "search", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run([*cmd, "--out", str(tmp_path / "straight")], check=True, cwd=ROOT, env=env, capture_output=True,
                   timeout=600)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--out", str(killed)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600  # a bound for a hung run, not a speed requirement
    started_epoch_2 = False
    while time.monotonic() < deadline and proc.poll() is None:  # kill as soon as epoch 2 logs steps
        metrics = killed / "metrics.jsonl"
        if metrics.exists() and '"epoch": 2' in metrics.read_text():  # epochs count from 1 in every file
            started_epoch_2 = True
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert started_epoch_2, "the search never reached its second epoch"
    assert checkpoint.load(killed / "checkpoint.pt")["epochs_done"] == 1
    subprocess.run([*cmd, "--out", str(killed), "--resume"], check=True, cwd=ROOT, env=env, capture_output=True,
                   timeout=600)
    straight = json.loads((tmp_path / "straight" / "genotype.json").read_text())
    resumed = json.loads((killed / "genotype.json").read_text())
    assert resumed["normal"] == straight["normal"] and resumed["reduce"] == straight["reduce"]
    assert json.loads((killed / "alphas.json").read_text()) == json.loads((tmp_path / "straight" / "alphas.json").read_text())


def test_epoch_steps_counts_full_batches_caps_them_and_explains_an_empty_epoch():
    from ssnas.runs.settings import epoch_steps

    assert epoch_steps(100, 32, 0, "the weight half") == 3
    assert epoch_steps(100, 32, 2, "the weight half") == 2
    with pytest.raises(UserError, match=r"--batch-size 64 is larger than the weight half \(50 images\)"):
        epoch_steps(50, 64, 0, "the weight half")


def test_bf16_precision_with_the_speed_route_is_refused(tmp_path):
    from ssnas.search import validate

    with pytest.raises(UserError, match="--kernels fast computes in float32"):
        validate(tiny_search_config(tmp_path, **{"optim.precision": "bf16", "run.kernels": "fast"}))
    with pytest.raises(UserError, match="precision"):
        validate(tiny_search_config(tmp_path, **{"optim.precision": "fp16"}))


@pytest.mark.slow
def test_a_bf16_step_trains_float32_parameters(tmp_path, fashion_train):
    cfg = tiny_search_config(tmp_path, **{"optim.precision": "bf16"})
    mean, std = fashion_train.mean_std()
    searcher = Searcher(cfg, 1, mean, std, torch.device("cpu"))
    images = fashion_train.images[:16]
    batch = searcher.make_batch(images, torch.arange(16), torch.Generator().manual_seed(0))
    before = [a.detach().clone() for a in searcher.alphas]
    searcher.arch_step(batch, batch)
    out = searcher.weight_step(batch, 0.0)
    assert torch.isfinite(out["loss"]) and all(p.dtype == torch.float32 for p in searcher.weights + searcher.alphas)
    assert any(not torch.equal(a, b) for a, b in zip(searcher.alphas, before))
    assert not any(type(m).__name__.startswith("Fast") and "Cell" not in type(m).__name__
                   for m in searcher.supernet.modules())  # bf16 runs the textbook kernels
