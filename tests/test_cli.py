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
