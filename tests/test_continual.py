"""Continual retraining (ssnas.training.continual, ssnas.continual): the CCL terms and the metrics on hand-computed
cases, the stream's split and exemplar selection, and real runs on Fashion-MNIST through the loop and the CLI."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from ssnas.errors import UserError
from ssnas.training.continual import (ContinualConfig, ContinualTerms, continual_metrics, extra_queue_loss,
                                      select_min_variance, select_random, similarity_distillation, split_steps)
from tests.conftest import requires_fashion

E = math.e


def test_distillation_is_the_kl_between_two_known_similarity_distributions():
    eye = torch.eye(2)
    # student: q = anchors = e1, e2 -> similarity rows (1, 0), (0, 1); teacher: both queries e1 -> rows (1, 0), (1, 0)
    # at t = 1: p_teacher rows (a, b), (a, b) and p_student rows (a, b), (b, a) with a = e / (1 + e), b = 1 / (1 + e);
    # KL row 1 = 0, row 2 = a log(a / b) + b log(b / a) = (a - b) * 1; batchmean halves the sum
    a, b = E / (1 + E), 1 / (1 + E)
    got = similarity_distillation(eye, eye, torch.tensor([[1.0, 0.0], [1.0, 0.0]]), eye, 1.0, 1.0)
    assert got.item() == pytest.approx((a - b) / 2, rel=1e-6)
    # the temperatures divide each side's similarities: teacher at t = 0.5 gives rows softmax(2, 0) = (c, d)
    c, d = E**2 / (1 + E**2), 1 / (1 + E**2)
    got = similarity_distillation(eye, eye, eye, eye, 1.0, 0.5)
    expected = c * math.log(c / a) + d * math.log(d / b)  # both rows alike
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # equal to torch's KL of the two distributions, and only the student gets a gradient
    torch.manual_seed(0)
    s_q, s_a, t_q, t_a = (F.normalize(torch.randn(5, 8), dim=1) for _ in range(4))
    s_q.requires_grad_(True)
    t_q.requires_grad_(True)
    loss = similarity_distillation(s_q, s_a, t_q, t_a)
    p_t, log_p_s = F.softmax(t_q @ t_a.t() / 0.04, 1), F.log_softmax(s_q @ s_a.t() / 0.07, 1)
    assert loss.item() == pytest.approx((p_t * (p_t.log() - log_p_s)).sum(1).mean().item(), rel=1e-5)
    loss.backward()
    assert s_q.grad is not None and t_q.grad is None


def test_extra_queue_loss_by_hand():
    q = torch.tensor([[1.0, 0.0]])
    extra = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    # logits (q.k, q.e1, q.e2) / 1 = (1, 0, -1): CE = -log(e / (e + 1 + 1/e))
    assert extra_queue_loss(q, q, extra, 1.0).item() == pytest.approx(-math.log(E / (E + 1 + 1 / E)), rel=1e-6)
    assert extra_queue_loss(q, q, extra, 0.5).item() == pytest.approx(-math.log(E**2 / (E**2 + 1 + E**-2)), rel=1e-6)


def test_average_accuracy_and_forgetting_by_hand():
    acc = [[0.9], [0.6, 0.8], [0.5, 0.7, 0.9]]
    got = continual_metrics(acc)
    assert got["average_accuracy"] == pytest.approx([0.9, 0.7, 0.7])
    # F_2 = 0.9 - 0.6; F_3 = mean(max(0.9, 0.6) - 0.5, 0.8 - 0.7)
    assert got["forgetting"] == pytest.approx([0.0, 0.3, 0.25])
    assert continual_metrics([[0.5], [0.7, 0.6]])["forgetting"][1] == pytest.approx(-0.2)  # learning more: negative
    with pytest.raises(ValueError, match="needs 2 tasks"):
        continual_metrics([[0.5], [0.7]])


def test_class_and_data_incremental_splits():
    labels = torch.arange(10).repeat_interleave(3)  # 10 classes of 3 images
    steps, order = split_steps(labels, 10, 5, "class", seed=0)
    assert sorted(order) == list(range(10)) and order != list(range(10))  # a seeded shuffle
    assert [s.classes for s in steps] == [tuple(order[2 * k:2 * k + 2]) for k in range(5)]
    for s in steps:
        assert len(s.index) == 6 and set(labels[s.index].tolist()) == set(s.classes)
    assert torch.equal(torch.cat([s.index for s in steps]).sort().values, torch.arange(30))
    assert split_steps(labels, 10, 5, "class", seed=0)[1] == order  # deterministic
    with pytest.raises(UserError, match="do not split into 3"):
        split_steps(labels, 10, 3, "class", seed=0)
    data, _ = split_steps(labels, 10, 3, "data", seed=0)
    assert [len(s.index) for s in data] == [10, 10, 10] and all(s.classes == tuple(range(10)) for s in data)
    assert torch.equal(torch.cat([s.index for s in data]).sort().values, torch.arange(30))


def test_random_exemplars_per_class():
    labels = torch.tensor([0] * 5 + [1] * 2 + [2] * 4)
    keep = select_random(labels, 3, seed=1)
    assert [int((labels[keep] == c).sum()) for c in range(3)] == [3, 2, 3]  # class 1 has only 2
    assert torch.equal(keep, select_random(labels, 3, seed=1))


@pytest.mark.slow  # scikit-learn's import alone takes seconds
def test_min_variance_exemplars_keep_the_steadiest_image_of_each_cluster():
    # two far-apart clusters of 4 images; image i's views scatter by noise i * 0.1 around it
    torch.manual_seed(0)
    centres = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    plain = torch.cat([centres[0].repeat(4, 1), centres[1].repeat(4, 1)]) + 0.01 * torch.randn(8, 3)
    scale = torch.tensor([0.3, 0.05, 0.2, 0.1, 0.4, 0.3, 0.02, 0.1]).view(8, 1, 1)
    views = F.normalize(plain[:, None] + scale * torch.randn(8, 6, 3), dim=2)
    keep = select_min_variance(F.normalize(plain, dim=1), views, clusters=2, per_cluster=1, seed=0)
    assert keep.tolist() == [1, 6]  # the least-scattered image of each cluster


def test_continual_terms_teacher_frozen_queue_fed_by_exemplars():
    from ssnas import registry
    from ssnas.training.objective import Batch, ObjectiveConfig

    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    objective = registry.objective("simclr")(ObjectiveConfig(proj_dim=8), 4)
    terms = ContinualTerms(ContinualConfig(steps=2, extra_queue_size=8), 8)
    old_keys = F.normalize(torch.randn(3, 8), dim=1)
    terms.begin_step(encoder, objective, torch.tensor([0, 1, 2]), old_keys)
    assert torch.equal(terms.extra.keys[:3], old_keys) and int(terms.extra.ptr) == 3
    assert all(not p.requires_grad for p in terms.parameters())  # teacher copies are frozen
    images = torch.randn(10, 1, 8, 8)
    batch = Batch(views=[images[:6], images[:6] + 0.1], index=torch.tensor([0, 1, 5, 6, 7, 8]))
    parts = terms(encoder, objective, batch, lambda ids: images[ids])
    assert parts["old_in_batch"].item() == 2 and parts["distill"].item() > 0
    assert int(terms.extra.ptr) == 5  # the two exemplars' keys were enqueued
    parts["loss"].backward()
    assert all(p.grad is not None for p in encoder.parameters())
    before = [p.clone() for p in terms.teacher_encoder.parameters()]
    with torch.no_grad():
        for p in encoder.parameters():
            p.add_(1.0)
    terms.after_epoch(encoder, objective)  # teacher <- 0.996 teacher + 0.004 student
    for b, t, s in zip(before, terms.teacher_encoder.parameters(), encoder.parameters()):
        torch.testing.assert_close(t, 0.996 * b + 0.004 * s)


# ---- settings ----------------------------------------------------------------------------------------------------

def _cfg(out, **overrides):
    from tests.test_retrain import tiny_retrain_config

    return tiny_retrain_config(out, **{"continual.steps": 2, "continual.exemplars": 4, "continual.linear_epochs": 5,
                                       "knn.test_subset": 100, "optim.epochs": 1, "run.tensorboard": False, **overrides})


@pytest.mark.parametrize("overrides,needle", [
    ({"continual.steps": 1}, "0 \\(off\\) or at least 2"),
    ({"continual.method": "ewc"}, "continual.method \\(--continual-method\\) must be one of ccl, replay, finetune, joint"),
    ({"objective.name": "byol"}, "defines no embed"),
    ({"objective.name": "supervised"}, "self-supervised objectives"),
    ({"run.resume": True}, "cannot be resumed"),
    ({"continual.exemplars": 0}, "\\(--exemplars\\) must be at least 1"),
])
def test_bad_continual_settings_fail_before_any_data(tmp_path, overrides, needle):
    from ssnas.continual import run_continual

    with pytest.raises(UserError, match=needle):
        run_continual(_cfg(tmp_path, **{"data.dataset": "/nonexistent.npz", **overrides}))


def test_run_retrain_refuses_a_continual_config(tmp_path):
    from ssnas.retrain import run_retrain

    with pytest.raises(UserError, match="continual loop"):
        run_retrain(_cfg(tmp_path, **{"data.dataset": "/nonexistent.npz"}))


# ---- real runs ---------------------------------------------------------------------------------------------------

@pytest.mark.slow
@requires_fashion
@pytest.mark.parametrize("objective", ["simclr", "clsa"])
def test_ccl_runs_end_to_end_and_reports_every_step(objective, tmp_path, fashion_train):
    from ssnas.continual import run_continual
    from ssnas.evaluate import EvalConfig, evaluate

    extra = {"objective.queue_size": 32} if objective == "clsa" else {}
    out = tmp_path / objective
    # 8 exemplars per class and batches of 16: a sixth of step 2's images are exemplars, so batches hold several
    cfg = _cfg(out, **{"objective.name": objective, "continual.exemplars": 8, "optim.batch_size": 16, **extra})
    result = run_continual(cfg, fashion_train, fashion_train)
    record = json.loads((out / "continual.json").read_text())
    assert record == json.loads(json.dumps(result.record))
    assert record["method"] == "ccl" and record["steps"] == 2 and len(record["per_step"]) == 2
    first, second = record["per_step"]
    assert len(first["classes"]) == 5 and not set(first["classes"]) & set(second["classes"])
    assert first["exemplars_kept"] == 40 and second["exemplars_kept"] == 80  # 8 per class of each step
    assert second["train_images"] == second["new_images"] + 40  # the step's images and the exemplars so far
    for name in ("knn", "linear"):
        matrix = record[name]["accuracy_matrix"]
        assert [len(r) for r in matrix] == [1, 2] and all(0 <= a <= 1 for r in matrix for a in r)
        assert record[name]["average_accuracy"][1] == pytest.approx(sum(matrix[1]) / 2)
        assert record[name]["forgetting"][1] == pytest.approx(matrix[0][0] - matrix[1][0])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["kind"] == "step"]
    incremental = [r for r in steps if r["epoch"] == 2]  # the second step's epoch (epochs count from 1)
    assert incremental and all({"distill", "extra_queue", "old_in_batch"} <= set(r) for r in incremental)
    assert any(r["old_in_batch"] >= 2 and r["distill"] > 0 for r in incremental)
    assert [r["continual_step"] for r in rows if r["kind"] == "continual"] == [1, 2]
    cfg = EvalConfig(protocol="knn", progress=False, tensorboard=False)
    cfg.data.dataset = "fashion-mnist"
    assert 0 <= evaluate(out, cfg, fashion_train, fashion_train)["accuracy"] <= 1  # the final network evaluates


@pytest.mark.slow
@requires_fashion
def test_baselines_share_the_schedule(tmp_path, fashion_train):
    """finetune keeps nothing, replay keeps random exemplars, joint learns everything at once; same classes order."""
    from ssnas.continual import run_continual

    records = {m: run_continual(_cfg(tmp_path / m, **{"continual.method": m}), fashion_train, fashion_train).record
               for m in ("finetune", "replay", "joint")}
    assert records["finetune"]["class_order"] == records["replay"]["class_order"] == records["joint"]["class_order"]
    assert [r["exemplars_kept"] for r in records["finetune"]["per_step"]] == [0, 0]
    assert [r["exemplars_kept"] for r in records["replay"]["per_step"]] == [20, 40]
    assert records["replay"]["selection"] == "random"
    joint = records["joint"]
    assert len(joint["per_step"]) == 1 and joint["per_step"][0]["train_images"] == len(fashion_train)
    assert len(joint["knn"]["accuracy_matrix"][0]) == 2  # scored on both steps' classes
    data = run_continual(_cfg(tmp_path / "data", **{"continual.split": "data", "continual.method": "replay"}),
                         fashion_train, fashion_train).record
    first, second = data["per_step"]
    assert len(first["classes"]) == len(second["classes"]) == 10 and first["new_images"] == 200
    assert first["exemplars_kept"] == 40  # 4 per class, every class is in every step
    matrix = data["knn"]["accuracy_matrix"]  # every task is the whole test set: a[k][j] is the same for all j
    assert matrix[1][0] == matrix[1][1] and data["knn"]["forgetting"][1] == pytest.approx(matrix[0][0] - matrix[1][0])


@pytest.mark.slow
@requires_fashion
def test_continual_through_the_cli(tmp_path, capsys):
    from ssnas.cli import main

    out = tmp_path / "cli"
    argv = ["retrain", "--arch", "DARTS_V2", "--dataset", "fashion-mnist", "--subset", "200", "--layers", "3",
            "--init-channels", "4", "--epochs", "1", "--batch-size", "8", "--steps-per-epoch", "2",
            "--warmup-epochs", "0", "--view-size", "16", "--proj-dim", "8", "--optimizer", "sgd", "--no-progress",
            "--device", "cpu", "--no-tensorboard", "--continual-steps", "2", "--exemplars", "2",
            "--continual-method", "finetune", "--linear-epochs", "3", "--test-subset", "50", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "continual (finetune, 2 steps)" in printed and "forgetting" in printed
    assert (out / "continual.json").is_file() and (out / "checkpoint.pt").is_file()
