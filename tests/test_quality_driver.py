"""experiments/nb201_quality.py, the issue-19 evidence driver: real `ssnas search` processes over a grid, resumed
when stopped, and a table that averages finished seeds only and lists every seed (unfinished ones marked)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ssnas.search_spaces import nb201
from tests.conftest import requires_fashion

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "experiments" / "nb201_quality.py"
TINY = """space = "nb201"
[data]
dataset = "fashion-mnist"
subset = 64
[augment]
size = 16
[supernet]
layers = 1
init_channels = 4
nodes = 2
[objective]
name = "simclr"
proj_dim = 16
[optim]
epochs = 2
batch_size = 8
steps_per_epoch = 2
[run]
device = "cpu"
tensorboard = false
"""


def _drive(tmp_path: Path, table: Path, *extra: str) -> str:
    cmd = [sys.executable, str(DRIVER), "--benchmark", str(table), "--data-root", str(tmp_path / "no-data"),
           "--out", str(tmp_path / "q"), "--config", str(tmp_path / "tiny.toml"),
           "--strategies", "darts,beta-darts", "--objectives", "simclr", "--seeds", "0", "--threads", "1", *extra]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
@requires_fashion
def test_the_driver_lists_unfinished_seeds_then_resumes_them_and_averages_finished_ones(tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY)
    values = torch.rand(15625, generator=torch.Generator().manual_seed(0)) * 100
    table = tmp_path / "table.csv"
    table.write_text("arch,cifar10_test\n" + "".join(f"{g.to_string()},{float(v):.4f}\n"
                                                      for g, v in zip(nb201.all_genotypes(), values)))
    truth = {g.to_string(): round(float(v), 4) for g, v in zip(nb201.all_genotypes(), values)}

    printed = _drive(tmp_path, table, "--set", "run.stop_after=1")  # every run stops after its first epoch
    assert "| darts | simclr | 0 | - | - | - | - | - | 0: " in printed and "(unfinished, epoch 1/2)" in printed

    _drive(tmp_path, table)  # the same command again resumes both runs to their end
    report = json.loads((tmp_path / "q" / "quality.json").read_text())
    for strategy in ("darts", "beta-darts"):
        run = report["runs"][strategy]["simclr"]["0"]
        assert run["finished"] and run["epochs_done"] == 2 and len(run["true"]) == 2
        assert run["final_true"] == pytest.approx(truth[run["arch"]])  # the table's value of the cell it derived
        summary = report["summary"][strategy]["simclr"]
        assert summary["seeds"] == 1 and summary["unfinished"] == 0
        assert summary["mean"] == pytest.approx(run["final_true"]) and summary["std"] == 0.0
        resumes = (tmp_path / "q" / strategy / "simclr" / "seed0" / "resumes.jsonl").read_text().splitlines()
        assert [json.loads(line)["finished_epochs"] for line in resumes] == [1]  # resumed, not started over
    table_md = (tmp_path / "q" / "quality.md").read_text()
    assert "unfinished" not in table_md and table_md.count("| simclr | 1 |") == 2
    assert (tmp_path / "q" / "trajectory.png").stat().st_size > 1000


def test_a_seed_that_stopped_early_is_finished_and_says_where_it_stopped():
    import importlib.util
    spec = importlib.util.spec_from_file_location("nb201_quality", DRIVER)
    driver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver)
    settled = {"final_true": 94.125, "finished": True, "epochs_done": 4, "epochs": 16}
    assert driver.seed_entry(0, settled) == "0: 94.12 (stopped, epoch 4/16)"
    assert driver.seed_entry(1, {**settled, "epochs_done": 16}) == "1: 94.12"
    assert driver.seed_entry(2, {**settled, "finished": False}) == "2: 94.12 (unfinished, epoch 4/16)"
