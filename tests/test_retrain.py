"""Contrastive pretraining of the full network: LARS and the schedule by hand, outputs, exact resume, errors."""
import json
import math

import pytest
import torch
from torch import nn

from ssnas.cli import main
from ssnas.config import apply_overrides
from ssnas.errors import UserError
from ssnas.retrain import RetrainConfig, run_retrain
from ssnas.runs import checkpoint
from ssnas.search_spaces.darts import PUBLISHED
from ssnas.training.optim import LARS, make_optimizer, warmup_cosine
from tests.conftest import requires_fashion


def tiny_retrain_config(out, **overrides) -> RetrainConfig:
    """3 cells of 4 channels on 16x16 views: a pretraining step well under a second on 2 cores."""
    cfg = RetrainConfig()
    apply_overrides(cfg, {
        "arch": "DARTS_V2", "data.dataset": "fashion-mnist", "data.subset": 400, "network.layers": 3,
        "network.init_channels": 4, "optim.epochs": 2, "optim.batch_size": 8, "optim.steps_per_epoch": 3,
        "optim.warmup_epochs": 0, "optim.optimizer": "sgd", "objective.proj_dim": 16, "augment.size": 16,
        "knn.every": 1, "knn.test_subset": 100, "run.out": str(out), "run.progress": False, "run.device": "cpu", "run.log_every": 1,
        **overrides})
    return cfg


def _metrics(out):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        for key in ("time", "images_per_s", "seconds"):
            row.pop(key, None)
    return rows


# ---- optimiser and schedule, by hand ------------------------------------------------------------------------

def test_lars_step_matches_the_hand_computed_update():
    w = nn.Parameter(torch.tensor([3.0, 4.0]))  # ||w|| = 5
    b = nn.Parameter(torch.tensor([1.0]))
    opt = LARS([{"params": [w]}, {"params": [b], "weight_decay": 0.0, "lars": False}], lr=2.0, momentum=0.9,
               weight_decay=0.1)
    w.grad, b.grad = torch.tensor([0.6, 0.8]), torch.tensor([0.5])
    opt.step()
    # g' = g + 0.1 w = (0.9, 1.2), ||g'|| = 1.5; trust = 0.001 * 5 / 1.5; v = 2 * trust * g' = (0.006, 0.008)
    assert w.tolist() == pytest.approx([3.0 - 0.006, 4.0 - 0.008], rel=1e-6)
    assert b.tolist() == pytest.approx([1.0 - 2.0 * 0.5])  # excluded: plain v = lr * g
    w.grad, b.grad = torch.tensor([0.6, 0.8]), torch.tensor([0.5])
    v_b = 0.9 * 1.0 + 2.0 * 0.5
    opt.step()
    assert b.tolist() == pytest.approx([0.0 - v_b])


def test_lars_excludes_biases_and_batch_norm():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    net(torch.randn(2, 3, 5, 5))
    opt = make_optimizer("lars", [net], lr=1.0, momentum=0.9, weight_decay=1e-6)
    regular, excluded = opt.param_groups
    assert {p.ndim for p in regular["params"]} == {2, 4} and regular["lars"] and regular["weight_decay"] == 1e-6
    assert {p.ndim for p in excluded["params"]} == {1} and not excluded["lars"] and excluded["weight_decay"] == 0
    assert len(excluded["params"]) == 4  # BN weight and bias, conv bias, linear bias


def test_warmup_then_cosine_by_hand():
    lrs = [warmup_cosine(s, total_steps=6, warmup_steps=2, base_lr=1.0) for s in range(7)]
    # warm-up 0.5, 1.0; cosine over the 4 remaining steps: 1, (1 + cos(pi/4))/2, 0.5, (1 + cos(3pi/4))/2, 0
    expected = [0.5, 1.0, 1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2, 0.0]
    assert lrs == pytest.approx(expected)
    assert warmup_cosine(3, 4, 0, 2.0, final_lr=1.0) == pytest.approx(1.0 + 0.5 * (1 + math.cos(3 * math.pi / 4)))


def test_recipes_scale_the_learning_rate_with_the_batch():
    cfg = RetrainConfig()
    assert cfg.optim.resolved() == (1.0 * 512 / 256, 1e-6)  # SimCLR CIFAR-10: LARS, lr 1.0 per 256, wd 1e-6
    apply_overrides(cfg, {"optim.optimizer": "sgd", "optim.batch_size": 128})
    assert cfg.optim.resolved() == (pytest.approx(0.06), 5e-4)  # lightly: 0.06 per 128 images


# ---- the loop ------------------------------------------------------------------------------------------------

@requires_fashion
def test_retrain_writes_every_promised_output(tmp_path, fashion_train):
    out = tmp_path / "run"
    result = run_retrain(tiny_retrain_config(out), fashion_train, fashion_train)
    assert result.finished and result.epochs_run == 2
    for name in ("config.json", "checkpoint.pt", "metrics.jsonl", "network.json", "genotype.json"):
        assert (out / name).is_file(), name
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    network = json.loads((out / "network.json").read_text())
    assert network["params"] == result.params > 0 and network["flops"] == result.flops > 0
    assert json.loads((out / "genotype.json").read_text())["normal"] == [list(p) for p in PUBLISHED["DARTS_V2"].normal]
    rows = _metrics(out)
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2] and all(0 <= r["knn_top1"] <= 1 for r in epochs)  # from 1
    steps = [r for r in rows if r["kind"] == "step"]
    assert len(steps) == 6 and all(math.isfinite(r["loss"]) and "nt_xent" in r for r in steps)
    state = checkpoint.load(out / "checkpoint.pt")
    assert state["epochs_done"] == 2 and state["data"]["view_size"] == 16 and state["arch"]["name"] == "DARTS_V2"


@pytest.mark.slow
@requires_fashion
def test_resume_equals_uninterrupted(tmp_path, fashion_train):
    straight = run_retrain(tiny_retrain_config(tmp_path / "a", **{"optim.epochs": 3}), fashion_train, fashion_train)
    first = run_retrain(tiny_retrain_config(tmp_path / "b", **{"optim.epochs": 3, "run.stop_after": 1}),
                        fashion_train, fashion_train)
    assert not first.finished
    resumed = run_retrain(tiny_retrain_config(tmp_path / "b", **{"optim.epochs": 3, "run.resume": True}),
                          fashion_train, fashion_train)
    assert resumed.finished and resumed.epochs_run == 2
    a, b = (checkpoint.load(tmp_path / x / "checkpoint.pt") for x in "ab")
    for part in ("encoder", "objective"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert a["history"] == b["history"] and resumed.knn_top1 == straight.knn_top1
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")


@requires_fashion
def test_refuses_to_overwrite_and_checks_resume_settings(tmp_path, fashion_train):
    cfg = tiny_retrain_config(tmp_path, **{"optim.epochs": 1, "optim.steps_per_epoch": 1, "knn.every": 0})
    run_retrain(cfg, fashion_train)
    with pytest.raises(UserError, match="--resume"):
        run_retrain(cfg, fashion_train)
    with pytest.raises(UserError, match="optim.momentum"):
        run_retrain(tiny_retrain_config(tmp_path, **{"optim.epochs": 1, "optim.momentum": 0.5, "run.resume": True}),
                    fashion_train)


@pytest.mark.parametrize("overrides,needle", [
    ({"network.auxiliary": True}, "needs labels"),
    ({"arch": "resnet18", "network.drop_path": 0.2}, "DARTS cells only"),
    ({"optim.optimizer": "adam"}, "--optimizer"),
    ({"optim.warmup_epochs": 5}, "--warmup-epochs"),
    ({"arch": "DARTS_V9"}, "unknown architecture"),
])
def test_bad_settings_fail_before_any_data_is_loaded(tmp_path, overrides, needle):
    cfg = tiny_retrain_config(tmp_path, **{"data.dataset": "/nonexistent.npz", **overrides})
    with pytest.raises(UserError, match=needle):
        run_retrain(cfg)


@pytest.mark.slow
@requires_fashion
def test_retrain_cli_runs_the_resnet18_baseline(tmp_path, capsys):
    out = tmp_path / "r18"
    argv = ["retrain", "--arch", "resnet18", "--dataset", "fashion-mnist", "--subset", "40", "--epochs", "1",
            "--batch-size", "4", "--steps-per-epoch", "1", "--warmup-epochs", "0", "--view-size", "8",
            "--proj-dim", "8", "--knn-every", "0", "--no-progress", "--device", "cpu", "--no-tensorboard",
            "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "11.168M parameters" in printed  # 11,168,832 less a 1-channel stem's 1,152 and f"ssnas eval {out}" in printed
    assert checkpoint.load(out / "checkpoint.pt")["arch"] == {"name": "resnet18", "genotype": None}
    assert not (out / "genotype.json").exists()
