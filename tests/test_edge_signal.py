"""experiments/edge_signal.py: the objective's gradient on one edge's alphas, read from a real search run."""
import importlib.util
import json

import pytest

from ssnas.search import run_search
from tests.conftest import ROOT, requires_fashion, tiny_search_config

spec = importlib.util.spec_from_file_location("edge_signal", ROOT / "experiments" / "edge_signal.py")
edge_signal = importlib.util.module_from_spec(spec)
spec.loader.exec_module(edge_signal)


@requires_fashion
def test_edge_signal_reads_a_search_run_and_reports_both_supernets(tmp_path, fashion_train, capsys):
    cfg = tiny_search_config(tmp_path / "run", **{"space": "nb201", "supernet.layers": 1, "optim.epochs": 1})
    run_search(cfg, fashion_train)
    capsys.readouterr()
    assert edge_signal.main([str(tmp_path / "run"), "--edge", "0->3", "--batches", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    penalty = lines.pop()["penalty"]  # beta-DARTS (the default) at the end of its 1 epoch: lambda = 50
    assert penalty["progress"] == 1.0 and penalty["mean_abs"] > penalty["across_ops_mean_abs"] > 0
    # lambda * d mean_edges logsumexp / d alpha = lambda * softmax / edges: 50 / 6 * 1/5 per alpha near uniform
    assert penalty["mean_abs"] == pytest.approx(50 / 6 / 5, rel=0.05)
    assert [r["supernet"] for r in lines] == ["soft", "others_derived"]
    derived = json.loads((tmp_path / "run" / "genotype.json").read_text())
    for r in lines:
        assert r["edge"] == "0->3" and r["derived"] == derived["arch"]
        grad = r["gradient"]
        assert list(grad) == ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
        # a softmax's gradient sums to zero over the ops of an edge (shifting every alpha equally changes nothing)
        assert sum(g["mean"] for g in grad.values()) == pytest.approx(0.0, abs=1e-4)
        assert all(g["se"] >= 0 for g in grad.values())
    # fixing the other edges to their derived ops changes what this edge's alphas see
    assert lines[0]["gradient"] != lines[1]["gradient"]


def test_edge_signal_refuses_bad_input_in_one_line(tmp_path, capsys):
    assert edge_signal.main([str(tmp_path), "--edge", "0->4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--edge '0->4' is not an edge" in err and "0->3" in err
    assert edge_signal.main([str(tmp_path), "--edge", "0-"]) == 2  # `--edge 0->3` unquoted in a shell
    assert "quote the edge, --edge '0->j'" in capsys.readouterr().err
    assert edge_signal.main([str(tmp_path), "--batches", "1"]) == 2
    assert "at least 2 batches" in capsys.readouterr().err
    assert edge_signal.main([str(tmp_path)]) == 2
    assert "holds no search run" in capsys.readouterr().err
