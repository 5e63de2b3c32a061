"""`ssnas bench search|retrain`: one JSON line with positive rates, through the real loops' code."""
from __future__ import annotations

import json

import pytest

from ssnas.cli import main
from tests.conftest import requires_fashion

TINY = ["--dataset", "fashion-mnist", "--subset", "64", "--batch-size", "4", "--view-size", "16",
        "--steps", "1", "--warmup", "0", "--bench-subset", "64", "--device", "cpu", "--json"]


def _row(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.slow
@requires_fashion
def test_bench_search_times_the_pc_darts_and_recompute_modes_too(capsys):
    plain = _row(capsys, ["bench", "search", "--layers", "3", "--init-channels", "8", "--nodes", "2", *TINY])
    pc = _row(capsys, ["bench", "search", "--layers", "3", "--init-channels", "8", "--nodes", "2",
                       "--partial-channels", "4", "--edge-norm", *TINY])
    recompute = _row(capsys, ["bench", "search", "--layers", "3", "--init-channels", "8", "--nodes", "2",
                              "--recompute-cells", *TINY])
    for row in (plain, pc, recompute):
        assert row["bench"] == "search" and row["images_per_s"] > 0 and row["peak_mem_mb"] > 0
        assert row["batch_size"] == 4 and row["views"] == 2
    assert (plain["partial_channels"], plain["edge_norm"], plain["recompute_cells"]) == (1, False, False)
    assert (pc["partial_channels"], pc["edge_norm"]) == (4, True) and recompute["recompute_cells"] is True


@requires_fashion
def test_bench_retrain_compares_fast_and_textbook_kernels(capsys):
    row = _row(capsys, ["bench", "retrain", "--arch", "DARTS_V2", "--layers", "3", "--init-channels", "4", *TINY])
    assert row["bench"] == "retrain" and row["arch"] == "DARTS_V2" and row["layers"] == 3
    assert row["images_per_s"] > 0 and row["textbook_images_per_s"] > 0
    assert row["speedup_vs_textbook"] > 0 and row["peak_mem_mb"] > 0
