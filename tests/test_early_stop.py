"""DARTS+ early stopping (ssnas.nas.early_stop): the rule on hand-made genotype sequences, and a real search that
stops, equals the full run's first epochs, and stays stopped on --resume."""
import json

import pytest
import torch

from ssnas.nas.early_stop import settled, unchanged_epochs
from ssnas.runs import checkpoint
from ssnas.search import run_search
from tests.conftest import tiny_search_config


@pytest.mark.parametrize("genotypes, unchanged", [
    ([], 0), (["a"], 0), (["a", "a"], 1), (["a", "b"], 0), (["a", "a", "b", "b", "b"], 2), (["b", "a", "a", "a"], 2),
])
def test_unchanged_epochs_counts_the_last_run_of_equal_genotypes(genotypes, unchanged):
    assert unchanged_epochs(genotypes) == unchanged


def test_settled_needs_patience_equal_derivations_after_the_first_and_zero_never_stops():
    assert not settled(["a", "a", "a"], 3) and settled(["a", "a", "a", "a"], 3)
    assert not settled(["a"] * 10, 0)
    # seed 0 of the NB201 default (BENCHMARKS.md): the shortcut cell for epochs 1-4, then a conv on 0->3
    trajectory = ["skip"] * 4 + ["conv"] * 9
    stops = next(e for e in range(1, len(trajectory) + 1) if settled(trajectory[:e], 3))
    assert stops == 4


@pytest.mark.slow
def test_a_settled_search_stops_is_the_full_runs_prefix_and_stays_stopped(tmp_path, fashion_train):
    # an architecture step too small to move any argmax: the derived cell never changes, so patience 1 stops
    # after epoch 2 of 4
    still = {"optim.epochs": 4, "optim.arch_lr": 1e-12}
    full = run_search(tiny_search_config(tmp_path / "full", **still), fashion_train)
    stopped = run_search(tiny_search_config(tmp_path / "early", **still, **{"optim.stop_when_stable": 1}),
                         fashion_train)
    assert full.epochs_run == 4 and stopped.epochs_run == 2 and stopped.finished
    assert stopped.genotype == full.genotype
    assert json.loads((tmp_path / "early" / "genotype.json").read_text())["meta"]["finished"] is True
    rows = [json.loads(line) for line in (tmp_path / "early" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["kind"] == "early_stop"] == [2]
    # the stopped run is the full run's first two epochs, weight for weight
    early = checkpoint.load(tmp_path / "early" / "checkpoint.pt")
    assert early["epochs_done"] == 2
    full_history = [json.loads(line) for line in (tmp_path / "full" / "genotypes.jsonl").read_text().splitlines()]
    assert early["history"][1]["genotype"] == full_history[1]["genotype"]
    prefix = run_search(tiny_search_config(tmp_path / "prefix", **still, **{"run.stop_after": 2}), fashion_train)
    a = checkpoint.load(tmp_path / "prefix" / "checkpoint.pt")["searcher"]["supernet"]
    b = early["searcher"]["supernet"]
    assert not prefix.finished and all(torch.equal(a[k], b[k]) for k in a)
    # resuming a settled search runs nothing more
    again = run_search(tiny_search_config(tmp_path / "early", **still, **{"optim.stop_when_stable": 1,
                                                                         "run.resume": True}), fashion_train)
    assert again.epochs_run == 0 and again.finished
