"""Regression tests for the invalid inputs of issue 14 that ended in a traceback or were silently accepted: each is
now one line, `ssnas: error: ...` naming the key, its flag, the value and what is allowed, with exit code 2, raised
before any data is loaded. (tests/test_fuzz.py generates a thousand more.)"""
from __future__ import annotations

import json
import tracemalloc

import pytest

from ssnas.cli import main

SEARCH = ["search", "--dataset", "/nonexistent/data.npz", "--device", "cpu"]  # data would fail: this must not get there


def _error(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("ssnas: error:") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("args, says", [
    # tracebacks before: OverflowError, torch's ValueError, a RuntimeError deep in torch
    (["--set", "supernet.init_channels=inf"], "'supernet.init_channels' must be an integer, got inf"),
    (["--lr", "-0.1"], "optim.lr (--lr) must be in (0, inf), got -0.1"),
    (["--momentum", "-1"], "optim.momentum (--momentum) must be in [0, 1), got -1.0"),
    (["--arch-betas", "1,2,3"], "optim.arch_betas (--arch-betas) must hold 2 values, got 3"),
    (["--arch-betas", "0.5,1.5"], "optim.arch_betas (--arch-betas) must be in [0, 1), got 1.5"),
    (["--arch-lr", "nan"], "optim.arch_lr (--arch-lr) must be a finite number in (0, inf), got nan"),
    (["--stem-multiplier", "0"], "supernet.stem_multiplier (--stem-multiplier) must be in [1, 16], got 0"),
    (["--set", "objective.proj_hidden_dim=-100"], "objective.proj_hidden_dim (--proj-hidden-dim) must be in [0, 65536]"),
    # silently accepted before
    (["--steps-per-epoch", "-1"], "optim.steps_per_epoch (--steps-per-epoch) must be in [0, 1e9], got -1"),
    (["--strategy", "beta-darts", "--set", "strategy.weight=-1"], "strategy.weight (--set strategy.weight=...) must be in [0, 1e6], got -1.0"),
    (["--set", "optim.beta_decay=-1"], "config key 'optim.beta_decay' is now a search strategy: use --strategy beta-darts"),
    (["--strategy", "dartz"], "unknown strategy 'dartz'; available:"),
    (["--grad-clip", "nan"], "optim.grad_clip (--grad-clip) must be a finite number in [0, inf), got nan"),
    (["--temperature", "inf"], "objective.temperature (--temperature) must be a finite number in (0, 100], got inf"),
    (["--stop-after", "-1"], "run.stop_after (--stop-after) must be in [0, 100000], got -1"),
    (["--lr-min", "-1"], "optim.lr_min (--lr-min) must be in [0, inf), got -1.0"),
    (["--order", "3"], "optim.order (--order) must be one of 1, 2, got 3"),
    (["--device", "meta"], "unknown device 'meta'"),
    (["--objective", "clsa", "--set", "objective.queue_size=inf"], "'objective.queue_size' must be an integer"),
    (["--objective", "clsa", "--set", "objective.momentum=nan"], "objective.momentum (--set objective.momentum=...)"),
    (["--set", "run.out={a = 1}"], "'run.out' must be a string"),
    (["--unknown-flag"], "unrecognized arguments: --unknown-flag"),
])
def test_search_settings(capsys, args, says):
    assert says in _error(capsys, SEARCH + args)


@pytest.mark.parametrize("argv, says", [
    (["retrain", "--lr", "nan"], "optim.lr (--lr) must be a finite number in (0, inf), got nan"),
    (["retrain", "--warmup-epochs", "20", "--epochs", "10"], "must be <= --epochs 10"),
    (["eval", "/nonexistent", "--linear-lr", "nan"], "linear.lr (--linear-lr) must be a finite number"),
    (["eval", "/nonexistent", "--finetune-lr", "nan"], "finetune.lr (--finetune-lr) must be a finite number"),
    (["eval", "/nonexistent", "--supervised-lr", "-1"], "supervised.lr (--supervised-lr) must be in (0, inf)"),
    (["tune", "--study", ".."], "study (--study) must be a plain name"),  # wrote outside --out before
    (["tune", "--study", "a/b"], "study (--study) must be a plain name"),
    (["tune", "--trials", "0"], "trials (--trials) must be in [1, 100000]"),
    (["tune", "--nni", "--tuner-wait", "nan"], "--tuner-wait must be in [1, 3600] seconds, got nan"),
    (["search", "--nni", "--tuner-wait", "0"], "--tuner-wait must be in [1, 3600] seconds, got 0.0"),
    (["export", "DARTS_V2", "--batch-size", "0"], "batch_size (--batch-size) must be in [1, 1024]"),
    (["show", "DARTS_V2", "--layers", "100000"], "layers (--layers) must be in [0, 200]"),
    (["bench", "search", "--steps", "0"], "--steps must be in [1, 1000000]"),
])
def test_other_commands(capsys, argv, says):
    assert says in _error(capsys, argv)


def test_deeply_nested_genotype_json_is_refused_before_parsing(tmp_path, capsys):
    """A RecursionError traceback before."""
    path = tmp_path / "deep.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    assert "nests its lists and objects more than 32 levels" in _error(capsys, ["export", str(path), "--to", "json"])


def test_huge_genotype_file_is_refused_before_reading(tmp_path, capsys):
    path = tmp_path / "huge.json"
    with open(path, "wb") as f:
        f.truncate(3 << 30)  # a sparse 3 GB file: reading it would be the bug
    assert "more than the 1,048,576 such a file can need" in _error(capsys, ["show", str(path)])


def test_python_genotype_with_a_huge_range_costs_nothing(tmp_path, capsys):
    """3.9 GB of memory and a 489 MB "one-line" error before: the range is measured before it is made."""
    path = tmp_path / "cells.py"
    path.write_text("G = Genotype(normal=[], normal_concat=range(2, 50000000), reduce=[], reduce_concat=[2])\n")
    tracemalloc.start()
    try:
        err = _error(capsys, ["export", str(path), "--to", "json"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "would list 49,999,998 nodes" in err and len(err) < 300
    assert peak < 50 << 20, f"{peak / 2**20:.0f} MiB"


def test_config_file_errors(tmp_path, capsys):
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert "nests its tables or lists too deeply" in _error(capsys, SEARCH + ["--config", str(deep)])
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([1, 2]))
    assert "must hold a table of settings" in _error(capsys, SEARCH + ["--config", str(listed)])
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[optim]\nlr = [1, 2]\n")
    assert "'optim.lr' must be a number, got [1, 2]" in _error(capsys, SEARCH + ["--config", str(wrong)])
