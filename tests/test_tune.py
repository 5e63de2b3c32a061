"""`ssnas tune`: the declared space, real tiny studies on Fashion-MNIST (complete, prune, fail, resume after a crash),
the best config going back into `ssnas search --config`, and the CLI."""
import json
import os
import subprocess
import sys

import optuna
import pytest
import torch
from optuna.trial import TrialState

from ssnas import registry
from ssnas.cli import main
from ssnas.config import apply_overrides, resolve, to_dict
from ssnas.errors import UserError
from ssnas.retrain import RetrainConfig
from ssnas.search import SearchConfig
from ssnas.tune.session import TuneConfig, TuneData, make_pruner, prepare_study, run_tune, storage_url
from ssnas.tune.space import every_tunable, nni_search_space, space_for
from ssnas.tune.study import distributions
from ssnas.runs import checkpoint
from tests.conftest import requires_fashion, tiny_search_config

optuna.logging.set_verbosity(optuna.logging.WARNING)

TINY_TRIAL = {"optim.epochs": 2, "optim.steps_per_epoch": 1, "run.tensorboard": False}


def _tune(tmp_path, study="s", **fields) -> TuneConfig:
    tune = TuneConfig(study=study, storage=f"sqlite:///{tmp_path / 'tune.db'}", trials=3, pruner="none",
                      val_size=40, bank_size=0, plots=False)
    tune.knn.k = 20
    for key, value in fields.items():
        setattr(tune, key, value)
    return tune


@pytest.fixture
def data(fashion_train):
    return TuneData.split(fashion_train, val_size=40, bank_size=0, seed=0)


def _states(study):
    return [t.state for t in study.get_trials(deepcopy=False)]


# ---- the space, declared once --------------------------------------------------------------------------------

def test_space_follows_the_objective_and_reads_the_same_everywhere():
    simclr, clsa = [p.key for p in space_for("simclr")], [p.key for p in space_for("clsa")]
    assert "objective.aug_times" not in simclr and "objective.magnitude" not in simclr
    assert set(clsa) < {p.key for p in every_tunable()} and set(simclr) < set(clsa)
    every = {p.key for name in registry.available_objectives() for p in space_for(name, continual=True)}
    assert every == {p.key for p in every_tunable()}  # the union of the objectives' spaces and continual's
    assert "continual.distill_weight" not in simclr and "continual.distill_weight" in [
        p.key for p in space_for("simclr", continual=True)]
    params = space_for("clsa")
    assert list(distributions(params)) == clsa == list(nni_search_space(params))
    temperature = next(p for p in params if p.key == "objective.temperature")
    assert temperature.log and distributions((temperature,))["objective.temperature"].log
    # NNI's randint excludes its upper end; Optuna's IntDistribution includes it
    assert nni_search_space(params)["objective.magnitude"] == {"_type": "randint", "_value": [2, 11]}
    assert distributions(params)["objective.magnitude"].high == 10
    # each end of every range is a valid setting of its config key (CLSA's checks included)
    for end in ("low", "high"):
        cfg = apply_overrides(SearchConfig(), {"objective.name": "clsa"})
        apply_overrides(cfg, {p.key: (int if p.kind == "int" else float)(getattr(p, end)) for p in params})
        from ssnas.objectives.clsa import CLSA

        CLSA(cfg.objective, 16)  # validates aug_times and magnitude
        cfg.augment.validate()


def test_show_space_prints_every_key(capsys):
    assert main(["tune", "--show-space", "--objective", "clsa"]) == 0
    out = capsys.readouterr().out
    assert all(p.key in out for p in every_tunable())
    assert "objective.magnitude (" not in out and "objective.reconstruction_weight (not for clsa)" in out
    assert "continual.distill_weight (with --continual-steps only)" in out
    assert main(["tune", "--show-space"]) == 0
    assert "objective.magnitude (not for simclr)" in capsys.readouterr().out
    assert main(["tune", "--show-space", "--target", "genotype", "--continual-steps", "5"]) == 0
    out = capsys.readouterr().out
    assert "continual.distill_weight (" not in out and "continual.extra_queue_weight" in out


def test_pruner_kinds():
    tune = TuneConfig()
    for kind, cls in (("median", optuna.pruners.MedianPruner), ("hyperband", optuna.pruners.HyperbandPruner),
                      ("none", optuna.pruners.NopPruner)):
        tune.pruner = kind
        assert isinstance(make_pruner(tune, 10), cls)
    tune.pruner, tune.prune_below = "threshold", 0.3
    assert isinstance(make_pruner(tune, 10), optuna.pruners.ThresholdPruner)


def test_validation_split_is_held_out_and_balanced(fashion_train):
    d = TuneData.split(fashion_train, val_size=40, bank_size=100, seed=0)
    assert len(d.val) == 40 and len(d.train) == 360 and len(d.bank) == 100
    assert torch.bincount(d.val.labels, minlength=10).tolist() == [4] * 10
    train_rows = {bytes(x.numpy()) for x in d.train.images}
    assert not any(bytes(x.numpy()) in train_rows for x in d.val.images)  # never trained on
    assert all(bytes(x.numpy()) in train_rows for x in d.bank.images)


# ---- real studies ----------------------------------------------------------------------------------------------

@pytest.mark.slow
@requires_fashion
def test_study_completes_resumes_and_its_best_config_goes_into_search(tmp_path, data):
    base = tiny_search_config(tmp_path / "tune", **{**TINY_TRIAL, "run.tensorboard": True})
    tune = _tune(tmp_path, plots=True)
    result = run_tune(tune, base, data)
    study = result.study
    assert _states(study) == [TrialState.COMPLETE] * 3
    for t in study.trials:
        assert sorted(t.intermediate_values) == [1, 2] and 0 <= t.value <= 1  # kNN top-1 after every epoch
        assert t.value == t.intermediate_values[2]
        folder = result.root / f"trial-{t.number:04d}"
        assert (folder / "metrics.jsonl").is_file() and list((folder / "tensorboard").glob("events.*"))
        assert json.loads((folder / "config.json").read_text())["objective"]["temperature"] == \
            t.params["objective.temperature"]
        assert [json.loads(r)["knn_top1"] for r in (folder / "knn.jsonl").read_text().splitlines()] == \
            [t.intermediate_values[1], t.intermediate_values[2]]
    assert {p.name for p in result.plots} == {"history.png", "intermediate_values.png", "parallel_coordinate.png",
                                              "importance.png"}

    # resume from SQLite in a fresh study object: --trials 4 runs exactly one more trial
    base.run.tensorboard = False  # may change between sessions: it does not change a trial's score
    again = run_tune(_tune(tmp_path, trials=4), base, data)
    assert again.ran == 1 and _states(again.study) == [TrialState.COMPLETE] * 4
    assert len({json.dumps(t.params, sort_keys=True) for t in again.study.trials}) == 4  # no repeated draw
    assert run_tune(_tune(tmp_path, trials=4), base, data).ran == 0

    # the best config round-trips: `ssnas search --config` runs with exactly the best parameters
    best = again.study.best_trial
    cfg_file = again.best_config
    assert cfg_file.name == "best_config.toml"
    out = tmp_path / "from-best"
    assert main(["search", "--config", str(cfg_file), "--out", str(out), "--no-progress", "--epochs", "1"]) == 0
    ran = json.loads((out / "config.json").read_text())
    for key, value in best.params.items():
        section, name = key.split(".")
        assert ran[section][name] == value, key
    expected = to_dict(apply_overrides(tiny_search_config(out, **TINY_TRIAL), {**best.params, "optim.epochs": 1}))
    assert {k: v for k, v in ran.items() if k != "run"} == {k: v for k, v in expected.items() if k != "run"}
    # the tuned keys alone fit a retrain config too
    retrain = resolve(RetrainConfig, str(again.best_params), {})
    assert retrain.objective.temperature == best.params["objective.temperature"]
    assert retrain.augment.jitter_strength == best.params["augment.jitter_strength"]


@pytest.mark.slow
@requires_fashion
def test_a_pruner_that_must_prune_prunes(tmp_path, data):
    base = tiny_search_config(tmp_path / "tune", **TINY_TRIAL)
    # a lower bound of 1 prunes every trial that is not perfect after its first epoch (these, seeded, are far from it)
    result = run_tune(_tune(tmp_path, trials=3, pruner="threshold", prune_below=1.0), base, data)
    assert _states(result.study) == [TrialState.PRUNED] * 3
    assert all(list(t.intermediate_values) == [1] for t in result.study.trials)
    assert result.best_config is None  # nothing completed, nothing to recommend


@pytest.mark.slow
@requires_fashion
def test_a_crashed_trial_runs_again_with_its_parameters(tmp_path, data):
    base = tiny_search_config(tmp_path / "tune", **TINY_TRIAL)
    tune = _tune(tmp_path, trials=1)
    study, _, _ = prepare_study(tune, base, space_for("simclr"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=120)
    crashed = study.ask(distributions(space_for("simclr")))  # asked by a worker that then died
    crashed.set_user_attr("ssnas_pid", dead.pid)
    alive = study.ask(distributions(space_for("simclr")))  # a live worker's trial is left alone
    alive.set_user_attr("ssnas_pid", os.getpid())
    result = run_tune(tune, base, data)
    trials = result.study.trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.RUNNING, TrialState.COMPLETE]
    assert trials[2].params == trials[0].params and trials[2].user_attrs["ssnas_retry_of"] == 0


@pytest.mark.slow
@requires_fashion
def test_a_failing_setting_fails_its_trials_and_then_stops_the_study(tmp_path, data):
    base = tiny_search_config(tmp_path / "tune", **{**TINY_TRIAL, "optim.lr": 1e30, "optim.grad_clip": 0.0,
                                                    "optim.steps_per_epoch": 3})
    with pytest.raises(UserError, match="3 trials in a row failed.*loss became"):
        run_tune(_tune(tmp_path, trials=5), base, data)
    study = optuna.load_study(study_name="s", storage=storage_url(_tune(tmp_path), base))
    assert _states(study) == [TrialState.FAIL] * 3
    assert "loss became" in study.trials[0].user_attrs["error"]


def test_a_resumed_study_removes_temporary_files_killed_writes_left(tmp_path):
    """Killed atomic writes of best_config.toml left `.*.tmp` files in the study folder forever. Several workers may
    share a study, so only those older than any write can take are removed."""
    base = tiny_search_config(tmp_path / "tune")
    _, _, root = prepare_study(_tune(tmp_path), base, space_for("simclr"))
    root.mkdir(parents=True, exist_ok=True)
    old, fresh = root / ".best_config.toml.k1ll3d00.tmp", root / ".best_config.toml.wr1t1ng0.tmp"
    for path in (old, fresh):
        path.write_text("half a config")
    os.utime(old, (old.stat().st_atime - 2 * 3600, old.stat().st_mtime - 2 * 3600))
    prepare_study(_tune(tmp_path), base, space_for("simclr"))
    assert not old.exists() and fresh.exists()


def test_resuming_with_other_settings_is_refused(tmp_path):
    simclr = space_for("simclr")
    base = tiny_search_config(tmp_path / "tune")
    prepare_study(_tune(tmp_path), base, simclr)
    # where the run goes, its device, and the tuned keys themselves may change
    moved = tiny_search_config(tmp_path / "elsewhere", **{"run.device": "cpu", "augment.jitter_strength": 0.9})
    prepare_study(_tune(tmp_path), moved, simclr)
    with pytest.raises(UserError, match="optim.epochs"):
        prepare_study(_tune(tmp_path), tiny_search_config(tmp_path / "tune", **{"optim.epochs": 7}), simclr)
    with pytest.raises(UserError, match="tune.val_size"):
        prepare_study(_tune(tmp_path, val_size=50), base, simclr)


# ---- the command line ------------------------------------------------------------------------------------------

TINY_CLI = ["--dataset", "fashion-mnist", "--subset", "120", "--val-size", "30", "--bank-size", "0", "--knn-k", "10",
            "--layers", "3", "--init-channels", "4", "--epochs", "1", "--batch-size", "8", "--steps-per-epoch", "1",
            "--proj-dim", "16", "--view-size", "16", "--no-progress", "--device", "cpu", "--no-plots",
            "--no-tensorboard"]


@pytest.mark.slow
@requires_fashion
def test_cli_tunes_a_genotype_and_refuses_flags_of_the_other_target(tmp_path, capsys):
    out = tmp_path / "g"
    # no --val-size and no --warmup-epochs: both derived from this small run's size (issue 16)
    tiny = [a for i, a in enumerate(TINY_CLI) if "--val-size" not in TINY_CLI[max(i - 1, 0):i + 1]]
    argv = ["tune", "--target", "genotype", "--arch", "DARTS_V2", "--trials", "1", "--study", "g", "--out", str(out),
            "--optimizer", "sgd", *tiny]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "derived (flags you did not set): --val-size 24 (20% of 120 images, at most 1000)" in printed
    assert f"best config: {out / 'g' / 'best_config.toml'}" in printed
    state = checkpoint.load(out / "g" / "trial-0000" / "checkpoint.pt")
    assert "encoder" in state and state["config"]["knn"]["every"] == 0  # scored on the split, not the test set
    cfg = resolve(RetrainConfig, str(out / "g" / "best_config.toml"), {})
    assert cfg.arch == "DARTS_V2" and cfg.network.layers == 3
    assert main(["tune", "--target", "genotype", "--nodes", "2", "--out", str(out)]) == 2
    assert "--nodes applies to --target supernet" in capsys.readouterr().err
    assert main(["tune", "--pruner", "threshold", "--out", str(out)]) == 2
    assert "--prune-below" in capsys.readouterr().err


@pytest.mark.slow
@requires_fashion
def test_cli_tunes_a_continual_retraining(tmp_path, capsys):
    """--target genotype with --continual-steps: each trial is a continual run, its knobs are in the space."""
    out = tmp_path / "c"
    argv = ["tune", "--target", "genotype", "--arch", "DARTS_V2", "--trials", "1", "--study", "c", "--out", str(out),
            "--optimizer", "sgd", "--warmup-epochs", "0", "--continual-steps", "2", "--exemplars", "2",
            "--linear-epochs", "2", *TINY_CLI]
    assert main(argv) == 0
    trial = out / "c" / "trial-0000"
    record = json.loads((trial / "continual.json").read_text())
    assert record["method"] == "ccl" and len(record["per_step"]) == 2
    assert len((trial / "knn.jsonl").read_text().splitlines()) == 2  # scored after each epoch of both steps
    best = resolve(RetrainConfig, str(out / "c" / "best_config.toml"), {})
    assert best.continual.steps == 2 and 0.01 <= best.continual.distill_weight <= 1.0


@pytest.mark.slow
def test_optuna_plots_show_full_parameter_names_and_warn_below_ten_trials(tmp_path):
    import optuna
    from optuna.visualization import matplotlib as plots

    from ssnas.tune import report

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    names = ("augment.jitter_strength", "augment.crop_scale_min", "objective.temperature")

    def objective(trial):
        values = [trial.suggest_float(name, 0.1, 1.0) for name in names]
        trial.report(values[0], 1)
        return values[0] - values[1]

    study.optimize(objective, n_trials=3)
    axes = plots.plot_parallel_coordinate(study)
    assert any(t.get_text().endswith("...") for t in axes.get_xticklabels())  # Optuna cuts names at 17 characters
    report._full_axis_names(axes, study)
    assert [t.get_text() for t in axes.get_xticklabels()][1:] == sorted(names)
    saved, skipped = report.save_plots(study, tmp_path)
    assert {p.name for p in saved} == {"history.png", "intermediate_values.png", "parallel_coordinate.png",
                                       "importance.png"} and not skipped
    assert "3 completed trial(s) only" in report.importance_caveat(3)


@pytest.mark.slow  # 28 TPE draws on SQLite and a subprocess
def test_a_study_resumed_after_a_crash_draws_what_an_uninterrupted_one_draws(tmp_path):
    """The sampler was re-seeded with seed + trials so far, so a study resumed after a crash drew other parameters
    than the uninterrupted one. Now each drawn trial's sampler is seeded from (study seed, its sampled index); the
    values a fixed function of the parameters stand in for the trials' training (14 trials: TPE's 10 random
    start-up draws, then its model's)."""
    from ssnas.tune.study import open_study, recover

    dists = distributions(space_for("simclr"))

    def run(study, n: int) -> None:
        for _ in range(n):
            trial = study.ask(dists)
            study.tell(trial, sum(v for v in trial.params.values()))

    straight = open_study(f"sqlite:///{tmp_path / 'straight.db'}", "s", seed=5)
    run(straight, 14)
    url = f"sqlite:///{tmp_path / 'crashed.db'}"
    crashed = open_study(url, "s", seed=5)
    run(crashed, 6)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=120)
    lost = crashed.ask(dists)  # trial 6 was drawn, then its worker was killed
    lost.set_user_attr("ssnas_pid", dead.pid)
    resumed = open_study(url, "s", seed=5)  # a new session, a new sampler object
    assert recover(resumed) == [6]
    run(resumed, 8)  # the re-run of trial 6, with its parameters, then 7 new draws
    done = [t.params for t in resumed.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 14 and done == [t.params for t in straight.trials]
