"""Several `ssnas tune` workers on one study: a real PostgreSQL server (tests/conftest.py starts one; the tests skip,
saying why, when it cannot start) and Optuna's journal file. Between them the workers run exactly --trials trials;
the trial of a worker that died is failed (Optuna's heartbeat on an RDB, ssnas's on a journal) and run again."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from ssnas.tune.session import TuneData, prepare_study, run_tune
from ssnas.tune.space import space_for
from ssnas.tune.study import distributions, lineages, make_storage
from tests.conftest import ROOT, requires_fashion, tiny_search_config
from tests.test_tune import TINY_CLI, TINY_TRIAL, _tune

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _worker(out, storage, trials, *extra):
    """One `ssnas tune` worker process (output in OUT/worker-PID.txt: never a pipe that could fill up)."""
    out.mkdir(parents=True, exist_ok=True)
    log = (out / f"worker-{time.monotonic_ns()}.txt").open("w")
    cmd = [sys.executable, "-m", "ssnas", "tune", "--storage", storage, "--study", "w", "--trials", str(trials),
           "--heartbeat", "1", "--out", str(out), *TINY_CLI, *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _logs(out) -> str:
    return "\n".join(p.read_text()[-2000:] for p in sorted(out.glob("worker-*.txt")))


def _exactly(study, trials):
    """No trial RUNNING or WAITING, `trials` lineages, each finished once with a result; no parameters twice."""
    every = study.get_trials(deepcopy=False)
    assert not [t.number for t in every if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    groups = lineages(every)
    assert len(groups) == trials, {root: [(t.number, t.state.name) for t in m] for root, m in groups.items()}
    done = [next(t for t in m if t.state == TrialState.COMPLETE) for m in groups.values()]
    assert len({tuple(sorted(t.params.items())) for t in done}) == trials
    return groups


@pytest.mark.slow
@requires_fashion
@pytest.mark.timeout(900)
@pytest.mark.parametrize("kind", ["postgresql", "journal"])
def test_two_workers_run_exactly_the_study_s_trials(tmp_path, kind, request):
    storage = request.getfixturevalue("postgres_url") if kind == "postgresql" else f"journal:{tmp_path / 'w.journal'}"
    out = tmp_path / "tune"
    workers = [_worker(out, storage, 4) for _ in range(2)]
    try:
        codes = [w.wait(timeout=800) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait(timeout=30)
    assert codes == [0, 0], _logs(out)
    study = optuna.load_study(study_name="w", storage=storage if kind == "postgresql" else
                              optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage[8:])))
    groups = _exactly(study, 4)
    assert all(len(m) == 1 for m in groups.values())  # nothing crashed, nothing ran twice
    assert {t.user_attrs["ssnas_pid"] for t in study.get_trials(deepcopy=False)} == {w.pid for w in workers}
    assert sorted(p.name for p in (out / "w").glob("trial-*")) == [f"trial-{n:04d}" for n in groups]


@pytest.mark.slow
@requires_fashion
@pytest.mark.timeout(900)
def test_a_killed_worker_s_trial_runs_again_in_the_other_one(tmp_path, postgres_url):
    out = tmp_path / "tune"
    slow = ["--epochs", "3"]  # a trial lasts long enough to be killed in the middle
    first, second = _worker(out, postgres_url, 3, *slow), _worker(out, postgres_url, 3, *slow)
    try:
        storage = optuna.storages.RDBStorage(postgres_url)
        deadline, victim = time.monotonic() + 400, None
        while victim is None and time.monotonic() < deadline and first.poll() is None:
            try:
                study = optuna.load_study(study_name="w", storage=storage)
            except KeyError:  # not created yet
                time.sleep(0.5)
                continue
            victim = next((t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING
                           and t.user_attrs.get("ssnas_pid") == first.pid
                           and len(t.params) == len(space_for("simclr"))), None)  # training, not starting
            time.sleep(0.5)
        assert victim is not None, _logs(out)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
        assert second.wait(timeout=800) == 0, _logs(out)
    finally:
        for w in (first, second):
            if w.poll() is None:
                w.kill()
                w.wait(timeout=30)
    study = optuna.load_study(study_name="w", storage=postgres_url)
    groups = _exactly(study, 3)
    killed = groups[victim.number]
    assert killed[0].state == TrialState.FAIL and killed[-1].state == TrialState.COMPLETE
    assert killed[0].number == victim.number and len(killed[0].params) == len(space_for("simclr"))
    assert killed[-1].params == killed[0].params and killed[-1].user_attrs["ssnas_pid"] == second.pid


@pytest.fixture
def data(fashion_train):
    return TuneData.split(fashion_train, val_size=40, bank_size=0, seed=0)


@pytest.mark.slow
@requires_fashion
@pytest.mark.parametrize("kind", ["postgresql", "journal"])
def test_a_silent_trial_of_another_machine_is_failed_after_the_heartbeat_and_run_again(tmp_path, kind, request,
                                                                                        data):
    """The worker on another machine cannot be asked whether it lives: only its heartbeat says so."""
    storage = request.getfixturevalue("postgres_url") if kind == "postgresql" else f"journal:{tmp_path / 'j.log'}"
    base = tiny_search_config(tmp_path / "tune", **TINY_TRIAL)
    tune = _tune(tmp_path, trials=1, storage=storage, heartbeat=1)
    study, _, _ = prepare_study(tune, base, space_for("simclr"))
    silent = study.ask(distributions(space_for("simclr")))
    silent.set_user_attr("ssnas_host", "another-machine")
    if kind == "postgresql":  # the one beat it gave before it died
        beats = make_storage(storage, heartbeat=1)
        beats.record_heartbeat(beats.get_trial_id_from_study_id_trial_number(
            beats.get_study_id_from_name("s"), silent.number))
    else:
        silent.set_user_attr("ssnas_alive", time.time())
    result = run_tune(tune, base, data)  # waits for the silent trial, fails it after 2 s, runs it again
    trials = result.study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].params == trials[0].params
    _exactly(result.study, 1)


@pytest.mark.slow
def test_workers_opening_a_fresh_database_together_all_open_it(postgres_url):
    """Workers started together on an empty database all create Optuna's tables; PostgreSQL refuses all but one
    CREATE TABLE (a duplicate key in pg_type), and make_storage opens the tables the winner made."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(6) as pool:
        storages = list(pool.map(lambda _: make_storage(postgres_url, heartbeat=60), range(6)))
    assert len(storages) == 6
    study = optuna.create_study(study_name="s", storage=storages[0])
    assert [s.get_study_id_from_name("s") for s in storages] == [study._study_id] * 6


def test_a_heartbeat_storage_opens_without_optunas_experimental_warning(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the retry callback is "experimental": it must be built inside the filter
        make_storage(f"sqlite:///{tmp_path / 'tune.db'}", heartbeat=10)
