import json
import subprocess
import sys

import pytest

from ssnas.cli import main
from tests.conftest import ROOT, requires_cifar, requires_fashion, shared_data_root

TINY = ["--layers", "3", "--init-channels", "4", "--nodes", "2", "--epochs", "1", "--batch-size", "8",
        "--steps-per-epoch", "2", "--proj-dim", "16", "--view-size", "16", "--no-progress", "--device", "cpu"]


def _one_line_error(capsys, argv, needle):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("ssnas: error:") and "\n" not in err and "Traceback" not in err
    assert needle in err, err


def test_missing_data_root_names_the_fix(tmp_path, capsys):
    _one_line_error(capsys, ["search", "--dataset", "cifar100", "--data-root", str(tmp_path / "nothing"),
                             "--out", str(tmp_path / "o"), *TINY], "--data-root")


def test_unknown_space_and_objective_list_what_exists(tmp_path, capsys):
    _one_line_error(capsys, ["search", "--space", "dartz", "--out", str(tmp_path)], "available: darts")
    _one_line_error(capsys, ["search", "--objective", "simclrr", "--out", str(tmp_path)], "simclr")


def test_bad_config_key_in_a_file(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[optim]\nlearning_rate = 0.1\n")
    _one_line_error(capsys, ["search", "--config", str(cfg), "--out", str(tmp_path)], "optim.learning_rate")


def test_bad_flag_value(tmp_path, capsys):
    _one_line_error(capsys, ["search", "--layers", "many", "--out", str(tmp_path)], "supernet.layers")


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = capsys.readouterr().out
    for flag in ("--layers", "--init-channels", "--epochs", "--batch-size", "--order", "--resume", "--seed",
                 "--device", "--temperature", "--jitter-strength", "--subset", "--data-root", "--config"):
        assert flag in text


def test_experiment_config_holds_the_published_darts_settings():
    from ssnas.config import resolve
    from ssnas.search import SearchConfig

    cfg = resolve(SearchConfig, str(ROOT / "experiments" / "darts_cifar10_simclr.toml"), {})
    assert (cfg.supernet.layers, cfg.supernet.init_channels, cfg.optim.epochs, cfg.optim.batch_size) == (8, 16, 50, 64)
    assert (cfg.optim.lr, cfg.optim.arch_lr, cfg.optim.weight_decay, cfg.optim.arch_weight_decay) == (0.025, 3e-4, 3e-4, 1e-3)
    assert cfg.data.dataset == "cifar10" and cfg.data.train_portion == 0.5 and cfg.objective.name == "simclr"


@pytest.mark.slow
@requires_fashion
def test_search_cli_end_to_end_prints_where_the_genotype_is(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", "--dataset", "fashion-mnist", "--subset", "64", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert f"genotype: {out / 'genotype.json'}" in printed
    assert json.loads((out / "config.json").read_text())["supernet"]["layers"] == 3


@pytest.mark.slow
def test_importing_the_cli_stays_light():
    code = "import sys, ssnas.cli; ssnas.cli.build_parser(); print(sorted(m for m in ('nni', 'optuna', 'tensorboard', 'matplotlib', 'pytorch_lightning') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                         timeout=300).stdout
    assert out.strip() == "[]"


@requires_cifar
@pytest.mark.slow
def test_search_on_real_cifar10(tmp_path, capsys):
    out = tmp_path / "cifar"
    argv = ["search", "--dataset", "cifar10", "--data-root", str(shared_data_root()), "--subset", "64",
            "--out", str(out), *TINY]
    assert main(argv) == 0
    genotype = json.loads((out / "genotype.json").read_text())
    assert genotype["meta"]["dataset"] == "cifar10" and len(genotype["reduce"]) == 4


@pytest.mark.slow
def test_python_dash_m_ssnas_is_the_cli():
    out = subprocess.run([sys.executable, "-m", "ssnas", "list"], capture_output=True, text=True, cwd=ROOT, check=True,
                         timeout=300).stdout
    assert "spaces:" in out and "darts" in out and "objectives:" in out
    assert "conrec" in out and "multitask" in out and "continual retraining" in out and "ccl, replay, finetune" in out


# ---- small runs, resuming by folder, what a run prints (issue 16) ---------------------------------------------

@pytest.mark.slow
@requires_fashion
def test_a_short_retrain_derives_its_warm_up_and_says_so(tmp_path, capsys):
    out = tmp_path / "r"
    argv = ["retrain", "--arch", "DARTS_V2", "--dataset", "fashion-mnist", "--subset", "64", "--layers", "3",
            "--init-channels", "4", "--epochs", "2", "--batch-size", "8", "--steps-per-epoch", "1", "--proj-dim", "8",
            "--view-size", "16", "--knn-every", "0", "--no-progress", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0  # no --warmup-epochs: SimCLR's 10 would not fit in 2 epochs
    printed = capsys.readouterr().out
    assert "derived (flags you did not set): --warmup-epochs 0 (2 epochs)" in printed
    assert json.loads((out / "config.json").read_text())["optim"]["warmup_epochs"] == 0  # the value it ran with
    # a value the user did set is still checked strictly
    assert main([*argv[:-2], "--out", str(tmp_path / "r2"), "--warmup-epochs", "5"]) == 2
    assert "(--warmup-epochs) must be <= --epochs 2, got 5" in capsys.readouterr().err


def _two_epoch_search(out) -> list[str]:
    return ["search", "--dataset", "fashion-mnist", "--subset", "64", "--out", str(out),
            *[("2" if TINY[i - 1] == "--epochs" else a) for i, a in enumerate(TINY)]]


@pytest.mark.slow
@requires_fashion
def test_resume_by_folder_alone_uses_the_saved_settings(tmp_path, capsys):
    out = tmp_path / "s"
    argv = _two_epoch_search(out)
    assert main([*argv, "--stop-after", "1"]) == 0
    assert f"continue with: ssnas search --resume --out {out}" in capsys.readouterr().out
    # a flag that changes the maths is refused, naming it, both values and the fix
    assert main(["search", "--resume", "--out", str(out), "--momentum", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "optim.momentum (0.9 -> 0.5)" in err and f"`--resume --out {out}` alone continues" in err
    # the folder alone: the saved settings, a resume-safe flag beside it, and the run finishes (no --stop-after)
    assert main(["search", "--resume", "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == [1, 2]
    assert json.loads((out / "genotype.json").read_text())["meta"]["epoch"] == 2
    # a folder that holds no run, with no settings given, is not silently started with the defaults
    assert main(["search", "--resume", "--out", str(tmp_path / "typo")]) == 2
    assert "holds no run to resume" in capsys.readouterr().err


@pytest.mark.slow
@requires_fashion
def test_epoch_lines_persist_with_no_progress_and_show_warns_about_an_undecided_cell(tmp_path, capsys):
    out = tmp_path / "s"
    argv = _two_epoch_search(out)
    assert main(argv) == 0  # TINY has --no-progress
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith(f"ssnas search: darts space, simclr objective -> {out}")
    assert any(line.startswith("  device:   cpu, threads 1 (OMP_NUM_THREADS=1; ") for line in lines)  # and why
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert len(epoch_lines) == 2 and epoch_lines[0].startswith("epoch 1/2  loss ")
    assert "genotype: first" in epoch_lines[0] and "img/s" in epoch_lines[1] and "op margin" in epoch_lines[1]
    assert "barely decided" in captured.err  # two tiny epochs cannot decide a cell
    assert main(["show", str(out), "--no-size"]) == 0
    shown = capsys.readouterr().out
    assert "epoch 2/2" in shown and "warning: the derived cell is barely decided" in shown
    assert "node 2 = " in shown and "node 0 =" not in shown  # nodes numbered as in genotype.json


@pytest.mark.slow
def test_sigterm_says_what_was_saved_and_how_to_continue(tmp_path):
    import os
    import signal
    import time

    out, log = tmp_path / "s", tmp_path / "stderr.txt"
    args = ["--dataset", "fashion-mnist", "--subset", "96", "--layers", "3", "--init-channels", "4", "--nodes", "2",
            "--epochs", "3", "--batch-size", "8", "--steps-per-epoch", "3", "--proj-dim", "16", "--view-size", "16",
            "--no-progress", "--device", "cpu", "--log-every", "1", "--no-tensorboard", "--out", str(out)]
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "ssnas.cli", "search", *args], cwd=ROOT, stderr=err,
                                stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 600  # a bound for a hung run, not a speed requirement
        while time.monotonic() < deadline and proc.poll() is None:
            metrics = out / "metrics.jsonl"
            if metrics.exists() and '"epoch": 2' in metrics.read_text():
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    text = log.read_text()
    assert code == 143, text
    assert f"interrupted by SIGTERM in epoch 2/3; epoch 1 of 3 is saved in {out}/checkpoint.pt" in text
    assert f"continue with: ssnas search --resume --out {out}" in text and "Traceback" not in text
