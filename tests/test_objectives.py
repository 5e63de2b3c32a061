"""The objective contract, for every registered objective: a real tiny search end to end, per-term losses in the
logs, pure forwards, frozen momentum encoders kept out of the optimisers, and exact resumes."""
from __future__ import annotations

import json

import pytest
import torch

from ssnas import registry
from ssnas.runs import checkpoint
from ssnas.search import Searcher, run_search
from ssnas.training.momentum import byol_tau
from tests.conftest import tiny_search_config

OBJECTIVES = registry.available_objectives()

# Settings that keep each run tiny or make its terms visible: a small CLSA queue, SuNCEt with enough labels that
# the tiny batches hold some.
TINY = {"clsa": {"objective.queue_size": 32}, "suncet": {"objective.labels_fraction": 0.5}}

# The named parts each objective logs besides "loss"; an objective added later needs at least one part.
PARTS = {"simclr": {"nt_xent"}, "clsa": {"contrastive", "ddm"}, "byol": {"byol", "tau"},
         "suncet": {"nt_xent", "suncet", "labelled"}, "imix": {"imix", "lam_mean"},
         "supervised": {"cross_entropy", "accuracy"}, "conrec": {"nt_xent", "reconstruction"},
         "multitask": {"nt_xent", "prediction", "jigsaw", "jigsaw_accuracy"}}
ENGINE_FIELDS = {"kind", "step", "time", "epoch", "loss", "arch_loss", "lr", "images_per_s"}


def _config(out, name, **overrides):
    """The shared tiny config with one node per cell (3 cells, so both cell kinds still appear)."""
    return tiny_search_config(out, **{"objective.name": name, "supernet.nodes": 1, **TINY.get(name, {}), **overrides})


def _searcher(tmp_path, fashion_train, name):
    cfg = _config(tmp_path, name)
    mean, std = fashion_train.mean_std()
    labelled = registry.objective(name).labels != "none"
    return Searcher(cfg, 1, mean, std, torch.device("cpu"), num_classes=10 if labelled else 0)


def _batch(searcher, fashion_train, seed=0):
    labels = fashion_train.labels[:8] if searcher.objective.labels != "none" else None
    return searcher.make_batch(fashion_train.images[:8], torch.arange(8), torch.Generator().manual_seed(seed), labels)


@pytest.mark.slow
@pytest.mark.parametrize("name", OBJECTIVES)
def test_search_runs_end_to_end_and_logs_every_term(name, tmp_path, fashion_train):
    out = tmp_path / name
    cfg = _config(out, name, **{"optim.epochs": 1})
    result = run_search(cfg, fashion_train)
    assert result.finished
    saved = json.loads((out / "genotype.json").read_text())
    genotype = registry.space("darts").genotype_from_json(saved)  # validates ops, inputs and shape
    assert genotype == result.genotype and saved["meta"]["objective"] == name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["kind"] == "step"]
    assert len(steps) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in steps)
    parts = set(steps[0]) - ENGINE_FIELDS
    assert parts >= PARTS.get(name, set()) and parts, f"{name} logs no named loss terms"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {f"step/{p}" for p in parts} <= set(events.Tags()["scalars"])
    if name == "clsa":  # the total is InfoNCE + beta * DDM (beta = 1)
        assert steps[0]["loss"] == pytest.approx(steps[0]["contrastive"] + steps[0]["ddm"], rel=1e-5)
    if name == "suncet":
        assert any(r["labelled"] > 0 and r["suncet"] > 0 for r in steps)


@pytest.mark.parametrize("name", OBJECTIVES)
def test_forward_is_pure_and_momentum_copies_stay_out_of_the_optimisers(name, tmp_path, fashion_train):
    searcher = _searcher(tmp_path, fashion_train, name)
    batch = _batch(searcher, fashion_train)
    # second-order DARTS evaluates the loss several times on one batch: it must not change between calls
    first, second = searcher.loss(batch)["loss"], searcher.loss(batch)["loss"]
    assert torch.equal(first, second)
    optimised = {id(p) for opt in (searcher.opt_w, searcher.opt_a) for g in opt.param_groups for p in g["params"]}
    frozen = [p for p in searcher.objective.parameters() if not p.requires_grad]
    assert not any(id(p) in optimised for p in frozen)
    assert all(id(p) in optimised for p in searcher.supernet.parameters())


@pytest.mark.parametrize("name", ["clsa", "byol"])
def test_momentum_encoder_follows_the_online_network(name, tmp_path, fashion_train):
    searcher = _searcher(tmp_path, fashion_train, name)
    objective = searcher.objective
    target = objective.key_encoder if name == "clsa" else objective.target_encoder
    assert all(not p.requires_grad for p in target.parameters())
    keys = set(objective.state_dict())
    prefix = "key_encoder." if name == "clsa" else "target_encoder."
    assert any(k.startswith(prefix + "alphas") for k in keys)  # the whole supernet, alphas included
    before = [p.detach().clone() for p in target.parameters()]
    queue_before = objective.queue.keys.clone() if name == "clsa" else None
    searcher.weight_step(_batch(searcher, fashion_train), progress=0.1)
    moved = [not torch.equal(b, p) for b, p in zip(before, target.parameters())]
    assert any(moved)
    # every weight, alphas included, is the EMA of its old value and the online network after the step
    tau = 0.999 if name == "clsa" else byol_tau(0.1, 0.996)
    online = dict(searcher.supernet.named_parameters())
    for (key, p), b in zip(target.named_parameters(), before):
        assert torch.allclose(p, tau * b + (1 - tau) * online[key].detach(), atol=1e-6), key
    if name == "clsa":
        assert not torch.equal(objective.queue.keys[:8], queue_before[:8])  # this batch's keys were enqueued
        assert objective.queue.ptr.item() == 8


@pytest.mark.slow
def test_clsa_resume_equals_uninterrupted(tmp_path, fashion_train):
    # one step per epoch keeps it cheap; the resumed epoch still needs the checkpointed key encoder, queue and RNG
    base = {"optim.epochs": 2, "optim.steps_per_epoch": 1}
    straight = run_search(_config(tmp_path / "a", "clsa", **base), fashion_train)
    first = run_search(_config(tmp_path / "b", "clsa", **base, **{"run.stop_after": 1}), fashion_train)
    assert not first.finished
    resumed = run_search(_config(tmp_path / "b", "clsa", **base, **{"run.resume": True}), fashion_train)
    assert resumed.finished and resumed.genotype == straight.genotype
    a = checkpoint.load(tmp_path / "a" / "checkpoint.pt")["searcher"]
    b = checkpoint.load(tmp_path / "b" / "checkpoint.pt")["searcher"]
    for part in ("supernet", "objective"):  # the objective holds the key encoder and the queue
        assert a[part].keys() == b[part].keys()
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part


# ---- each objective owns its settings ---------------------------------------------------------------------------

def test_each_objective_declares_what_it_reads_and_tunes():
    from ssnas.training.objective import SHARED_KNOBS

    for name in OBJECTIVES:
        cls = registry.objective(name)
        assert cls.uses <= SHARED_KNOBS, name
        keys = [p.key for p in cls.tunables()]
        assert ("objective.temperature" in keys) == ("temperature" in cls.uses), name
        assert all(k.startswith("objective.") for k in keys) and len(set(keys)) == len(keys)
    assert "temperature" not in registry.objective("byol").uses | registry.objective("supervised").uses


def test_options_and_used_knobs_are_checked_before_any_data(tmp_path):
    from ssnas.errors import UserError
    from ssnas.search import validate

    cfg = tiny_search_config(tmp_path, **{"objective.name": "clsa", "objective.queue_sise": 32})
    with pytest.raises(UserError, match="has no option 'queue_sise'"):
        validate(cfg)  # the typo fails here, before the dataset is loaded
    with pytest.raises(UserError, match=r"objective.temperature \(--temperature\) must be in \(0, 100\], got -1.0"):
        validate(tiny_search_config(tmp_path, **{"objective.temperature": -1.0}))
    # a knob the objective does not read is still range-checked: a wrong value is a mistake whoever reads it
    with pytest.raises(UserError, match="objective.temperature"):
        validate(tiny_search_config(tmp_path, **{"objective.name": "byol", "objective.temperature": -1.0}))
    with pytest.raises(UserError, match=r"objective.queue_size \(--set objective.queue_size=...\) must be in"):
        validate(tiny_search_config(tmp_path, **{"objective.name": "clsa", "objective.queue_size": 0}))


def test_the_documented_example_objective_is_one_file(tmp_path, monkeypatch, fashion_train):
    """docs/objectives.md's example, dropped in as a file: registered, checked, tuned, and run as a search step."""
    import re
    import sys

    import ssnas.objectives
    from ssnas.tune.space import space_for
    from tests.conftest import ROOT

    code = re.search(r"```python\n(.*?)```", (ROOT / "docs" / "objectives.md").read_text(), re.S).group(1)
    (tmp_path / "align_uniform.py").write_text(code)
    monkeypatch.setattr(ssnas.objectives, "__path__", [*ssnas.objectives.__path__, str(tmp_path)])
    try:
        assert "align_uniform" in registry.available_objectives()
        keys = [p.key for p in space_for("align_uniform")]
        assert "objective.weight" in keys and "objective.temperature" not in keys
        searcher = _searcher(tmp_path, fashion_train, "align_uniform")
        batch = _batch(searcher, fashion_train)
        assert torch.equal(searcher.loss(batch)["loss"], searcher.loss(batch)["loss"])
        parts = searcher.weight_step(batch, 0.1)
        assert {"align", "uniform"} <= set(parts) and torch.isfinite(parts["loss"])
    finally:
        sys.modules.pop("ssnas.objectives.align_uniform", None)
