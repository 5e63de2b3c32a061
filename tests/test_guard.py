"""The non-finite guard and resume-safe settings (issue 14): a run whose weights, alphas or BatchNorm statistics go
NaN or infinite stops with one line naming the tensor, the last good checkpoint stays, and `--resume` with a lower
learning rate continues from it (the change is recorded in resumes.jsonl); `eval` refuses a diverged network."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from ssnas.cli import main
from ssnas.errors import UserError
from ssnas.runs import checkpoint
from ssnas.runs.guard import first_nonfinite, named_tensors
from ssnas.search import Searcher, run_search
from tests.conftest import requires_fashion, tiny_search_config

SEARCH = ["search", "--dataset", "fashion-mnist", "--subset", "64", "--layers", "3", "--init-channels", "4",
          "--nodes", "2", "--batch-size", "8", "--steps-per-epoch", "2", "--proj-dim", "16", "--view-size", "16",
          "--no-progress", "--device", "cpu", "--no-tensorboard", "--check-every", "1"]


def test_first_nonfinite_names_the_first_bad_tensor_weights_and_buffers():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Linear(2, 2))
    assert first_nonfinite(named_tensors({"net": net})) is None
    net[1].running_var[1] = math.inf  # a buffer: the loss can stay finite while this overflows
    assert first_nonfinite(named_tensors({"net": net})) == ("net.1.running_var", "infinity")
    with torch.no_grad():
        net[0].weight[0, 0, 0, 0] = math.nan
    assert first_nonfinite(named_tensors({"net": net})) == ("net.0.weight", "NaN")
    # huge but finite: the screen's sum overflows, the exact check clears it
    assert first_nonfinite([("big", torch.full((4,), 3e38))]) is None


@pytest.mark.slow
@requires_fashion
def test_diverging_search_stops_keeps_the_good_checkpoint_and_resumes_with_a_lower_lr(tmp_path, capsys):
    """`--lr 1e8` ended with exit 0 and infinite BatchNorm statistics (1e20 here: 4 steps must overflow); the NaN
    message advised a lower --lr, but a
    resume with one was refused because the settings differed."""
    out = tmp_path / "run"
    assert main(SEARCH + ["--out", str(out), "--epochs", "3", "--stop-after", "1"]) == 0
    good = (out / "checkpoint.pt").read_bytes()
    config = str(out / "config.json")
    assert main(["search", "--resume", "--out", str(out), "--lr", "1e20"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ssnas: error:") and "\n" not in err, err
    assert "holds infinity" in err or "holds NaN" in err or "loss became" in err, err
    assert f"ssnas search --resume --out {out} --lr 1e+19" in err, err
    assert (out / "checkpoint.pt").read_bytes() == good, "a diverged epoch must not overwrite the last good one"
    assert checkpoint.load(out / "checkpoint.pt")["epochs_done"] == 1
    # continue with a lower rate: a resume-safe key, accepted and recorded
    assert main(["search", "--resume", "--config", config, "--lr", "0.01", "--arch-lr", "0.0001", "--stop-after", "0"]) == 0
    state = checkpoint.load(out / "checkpoint.pt")
    assert state["epochs_done"] == 3 and state["config"]["optim"]["lr"] == 0.01
    assert first_nonfinite(state["searcher"]["supernet"].items()) is None
    rows = [json.loads(line) for line in (out / "resumes.jsonl").read_text().splitlines()]
    assert [r["finished_epochs"] for r in rows] == [1, 1]
    assert rows[0]["changed"]["optim.lr"] == {"was": 0.025, "now": 1e20}
    assert rows[1]["changed"]["optim.lr"] == {"was": 0.025, "now": 0.01}  # against the checkpoint's settings
    assert rows[1]["changed"]["optim.arch_lr"] == {"was": 3e-4, "now": 1e-4}
    # a key that changes what was computed is still refused
    assert main(["search", "--resume", "--config", config, "--momentum", "0.5", "--epochs", "4"]) == 2
    assert "optim.momentum (0.9 -> 0.5)" in capsys.readouterr().err


@requires_fashion
def test_a_resumed_search_takes_the_new_rates_where_the_schedule_stands(tmp_path, fashion_train):
    cfg = tiny_search_config(tmp_path, **{"optim.epochs": 4, "run.stop_after": 2})
    run_search(cfg, fashion_train)
    resumed = tiny_search_config(tmp_path, **{"optim.epochs": 4, "optim.lr": 0.1, "optim.lr_min": 0.01,
                                              "optim.arch_lr": 0.002, "run.resume": True})
    searcher = Searcher(resumed, 1, [0.5], [0.5], torch.device("cpu"))
    searcher.load_state_dict(checkpoint.load(tmp_path / "checkpoint.pt")["searcher"])
    assert searcher.opt_w.param_groups[0]["lr"] != pytest.approx(0.1 * 0.5 + 0.01 * 0.5)
    searcher.take_changed_rates({"optim.lr": {}, "optim.arch_lr": {}})
    # cosine from 0.1 to 0.01 over 4 epochs, 2 done: exactly halfway
    assert searcher.opt_w.param_groups[0]["lr"] == pytest.approx(0.01 + 0.09 * 0.5)
    assert searcher.opt_a.param_groups[0]["lr"] == 0.002
    searcher.schedule.step()  # the schedule goes on from there, towards the new lr_min
    assert searcher.opt_w.param_groups[0]["lr"] == pytest.approx(0.01 + 0.09 * (1 + math.cos(math.pi * 3 / 4)) / 2)


@requires_fashion
def test_a_diverging_retrain_names_the_tensor(tmp_path, fashion_train):
    from ssnas.retrain import run_retrain
    from tests.test_retrain import tiny_retrain_config

    cfg = tiny_retrain_config(tmp_path, **{"optim.lr": 1e30, "optim.epochs": 1, "knn.every": 0, "run.check_every": 1})
    with pytest.raises(UserError, match=r"(holds (NaN|infinity)|loss became nan) at epoch 1, step \d, before any epoch "
                                        r"was saved"):
        run_retrain(cfg, fashion_train)
    assert not (tmp_path / "checkpoint.pt").exists()


@pytest.mark.slow
@requires_fashion
def test_eval_and_export_refuse_a_network_with_non_finite_weights(tmp_path, capsys):
    """`eval` of a diverged network reported "top-1 10.00%" before."""
    out = tmp_path / "retrain"
    assert main(["retrain", "--arch", "DARTS_V2", "--dataset", "fashion-mnist", "--subset", "64", "--layers", "3",
                 "--init-channels", "4", "--epochs", "1", "--warmup-epochs", "0", "--batch-size", "8",
                 "--steps-per-epoch", "1", "--knn-every", "0", "--proj-dim", "8", "--view-size", "16", "--no-progress",
                 "--device", "cpu", "--no-tensorboard", "--out", str(out)]) == 0
    state = checkpoint.load(out / "checkpoint.pt")
    name = next(k for k, v in state["encoder"].items() if v.is_floating_point() and "running_mean" in k)
    state["encoder"][name][0] = math.nan  # as a run without the guard could have saved it
    checkpoint.save(out / "checkpoint.pt", state, kind="retrain")
    capsys.readouterr()
    for argv in (["eval", str(out), "--protocol", "knn", "--device", "cpu"],
                 ["export", str(out), "--to", "onnx", "--out", str(tmp_path / "m.onnx")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert f"whose {name} is NaN: the retrain diverged" in err and "\n" not in err, err
