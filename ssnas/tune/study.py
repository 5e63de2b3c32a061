"""The Optuna side of a study, kept free of torch: opening it, recovering crashed trials, counting finished ones.
NNI's tuner process imports only this (and ssnas.config's `Tunable`), so it starts in about a second: the study's
ranges travel in its spec file as JSON (`to_json` / `from_json`)."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import time
import warnings
from typing import Any, Iterable

from ssnas.config import Tunable
from ssnas.errors import UserError


def trial_seed(seed: int, index: int) -> int:
    """The seed of the sampler's draws for the `index`-th sampled trial of a study seeded `seed`."""
    return (seed * 1_000_003 + index * 7_919 + 17) % 2**32


def sampled_index(study: Any, number: int) -> int:
    """A trial's place among the trials the sampler drew: its number, less the re-runs of crashed trials before
    it (those are enqueued with the crashed trial's parameters and draw nothing: ssnas's "ssnas_retry_of", and
    Optuna's heartbeat callback's "failed_trial" for a worker that fell silent). So the n-th drawn trial has
    index n whether or not the study crashed and resumed before it."""
    return number - sum(1 for t in study.get_trials(deepcopy=False)
                        if t.number < number and ("ssnas_retry_of" in t.user_attrs or "failed_trial" in t.system_attrs))


def seeded_sampler(seed: int) -> Any:
    """Optuna's TPE, seeded afresh for every trial from (study seed, the trial's sampled index): a trial's
    parameters depend on the seed, its place in the study and the results before it, never on how many
    processes ran the study or when one crashed. A study resumed after a crash therefore draws exactly what the
    uninterrupted one draws (TPE's first 10 trials are its random start-up draws, later ones its model's)."""
    import optuna

    class TrialSeededTPE(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self.tpe = optuna.samplers.TPESampler(seed=seed)

        def before_trial(self, study: Any, trial: Any) -> None:
            self.tpe = optuna.samplers.TPESampler(seed=trial_seed(seed, sampled_index(study, trial.number)))
            self.tpe.before_trial(study, trial)

        def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
            return self.tpe.infer_relative_search_space(study, trial)

        def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
            return self.tpe.sample_relative(study, trial, search_space)

        def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
            return self.tpe.sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            self.tpe.after_trial(study, trial, state, values)

        def reseed_rng(self) -> None:
            """Every trial is seeded from its index already; nothing to reseed."""

    return TrialSeededTPE()


# A worker's running trial records that it is alive every HEARTBEAT seconds (Optuna's heartbeat on an RDB; ssnas's
# own user attribute on a journal file, which has none); one silent for GRACE_FACTOR beats is failed by any worker
# and enqueued again, at most MAX_RETRIES times.
GRACE_FACTOR = 2
MAX_RETRIES = 3
SCHEMA_ATTEMPTS = 3  # opening an RDB while other workers create its tables (make_storage)
JOURNAL = "journal:"  # --storage journal:PATH: Optuna's JournalStorage on a file (clusters without a database)


def make_storage(url: str, heartbeat: int = 0) -> Any:
    """The Optuna storage of `url`: an RDB (SQLAlchemy URL: sqlite, postgresql, mysql) or `journal:PATH`; with
    `heartbeat` > 0, an RDB fails the trials of workers that stopped beating and enqueues them again."""
    import optuna

    if url.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend

        path = url[len(JOURNAL):]
        if not path:
            raise UserError("--storage journal:PATH needs a file path, e.g. journal:runs/tune.journal")
        return optuna.storages.JournalStorage(JournalFileBackend(path))
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}  # NNI's trial and tuner share it
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            with warnings.catch_warnings():  # heartbeats: "experimental" since Optuna 2.9, and what its docs advise
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                extra = {} if not heartbeat else dict(
                    heartbeat_interval=heartbeat, grace_period=GRACE_FACTOR * heartbeat,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=MAX_RETRIES))
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, **extra)
        except Exception as e:
            # Workers started together on a fresh database all create Optuna's tables; PostgreSQL lets one win and
            # refuses the others' CREATE TABLE with a duplicate key in its catalogue (pg_type). The tables exist
            # then, so a second try opens them.
            if attempt + 1 == SCHEMA_ATTEMPTS or not any(w in str(e) for w in ("duplicate key", "already exists")):
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def fail_silent_trials(study: Any) -> None:
    """Optuna's heartbeat check (RDB storages with a heartbeat): fail the trials whose worker fell silent; the
    storage's callback enqueues each again."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def open_study(url: str, name: str, pruner: Any = None, seed: int = 0, create: bool = True, heartbeat: int = 0) -> Any:
    """The study in `url`, created if asked, sampled by `seeded_sampler(seed)`."""
    import optuna

    try:
        storage = make_storage(url, heartbeat)
        if create:
            study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                        load_if_exists=True, pruner=pruner)
        else:
            study = optuna.load_study(study_name=name, storage=storage, pruner=pruner)
    except KeyError:
        raise UserError(f"no study named {name!r} in {url}; start it with ssnas tune --study {name}") from None
    except ImportError as e:
        raise UserError(f"cannot open --storage {url}: {e}; install its database driver (PostgreSQL: pip install "
                        f"'psycopg[binary]') or use sqlite:///FILE") from None
    except Exception as e:  # SQLAlchemy: bad URL, unreachable server, not a database
        if type(e).__module__.split(".")[0] not in ("sqlalchemy", "optuna", "psycopg", "psycopg2"):
            raise
        raise UserError(f"cannot open --storage {url}: {str(e).splitlines()[0]}") from None
    study.sampler = seeded_sampler(seed)
    return study


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---- trials across workers --------------------------------------------------------------------------------------
# A study's `--trials` counts lineages: a trial and the re-runs of it that a crash made (Optuna's heartbeat callback
# marks a re-run with the system attribute "failed_trial", ssnas with the user attribute "ssnas_retry_of"). Trial
# numbers are unique and ordered in every storage, so every worker agrees, without a lock, on which lineages are
# in the budget (the first `trials`, by number) and which trial of a lineage may run (the first live one): a trial
# that falls outside is "surplus", is given up at once and never counts. So several workers started on one study
# run exactly `trials` trials between them.

def _parent(t: Any) -> int | None:
    parent = t.system_attrs.get("failed_trial", t.user_attrs.get("ssnas_retry_of"))
    return None if parent is None or parent == t.number else int(parent)


def _is_surplus(t: Any) -> bool:
    return bool(t.user_attrs.get("ssnas_surplus"))


def lineages(trials: Iterable[Any]) -> dict[int, list[Any]]:
    """Trials grouped by the trial they re-run (their root), roots and members in number order; surplus left out."""
    by_number = {t.number: t for t in trials if not _is_surplus(t)}

    def root(number: int) -> int:
        seen = set()
        while True:
            parent = _parent(by_number[number]) if number in by_number else None
            if parent is None or parent in seen:
                return number
            seen.add(number)
            number = parent

    groups: dict[int, list[Any]] = {}
    for number in sorted(by_number):
        groups.setdefault(root(number), []).append(by_number[number])
    return dict(sorted(groups.items()))


def _done(members: list[Any]) -> bool:
    """A lineage is finished when a member completed or was pruned, or its newest member failed for good (on its
    settings, or a crash past the retries): not interrupted, and not waiting for the re-run a crash enqueues."""
    from optuna.trial import TrialState

    if any(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in members):
        return True
    last = members[-1]
    return last.state == TrialState.FAIL and not last.user_attrs.get("ssnas_interrupted")


@dataclasses.dataclass
class Progress:
    finished: int  # lineages in the budget that are finished
    open: int  # lineages the budget has room for that no trial has started yet
    waiting: int  # enqueued re-runs in the budget, ready for any worker
    running: list[int]  # trial numbers running now (in any worker)


def progress(study: Any, budget: int) -> Progress:
    from optuna.trial import TrialState

    groups = list(lineages(study.get_trials(deepcopy=False)).values())[:budget]
    live = [t for members in groups for t in members if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    return Progress(finished=sum(_done(m) for m in groups), open=budget - len(groups),
                    waiting=sum(t.state == TrialState.WAITING for t in live),
                    running=[t.number for t in live if t.state == TrialState.RUNNING])


def finished(study: Any, budget: int | None = None) -> int:
    """Trials that count towards --trials: lineages (a trial and its re-runs) that completed, were pruned, or
    failed on their own (not crashed and re-run); the first `budget` lineages only, if given."""
    groups = list(lineages(study.get_trials(deepcopy=False)).values())
    return sum(_done(m) for m in (groups if budget is None else groups[:budget]))


def surplus(study: Any, number: int, budget: int) -> bool:
    """Whether trial `number` must not run: its lineage is beyond the budget, or an earlier member of its lineage
    is running, waiting or finished (two workers enqueued the same re-run)."""
    from optuna.trial import TrialState

    groups = lineages(study.get_trials(deepcopy=False))
    for index, (root, members) in enumerate(groups.items()):
        numbers = [t.number for t in members]
        if number not in numbers:
            continue
        if index >= budget:
            return True
        earlier = members[:numbers.index(number)]
        return any(t.state != TrialState.FAIL for t in earlier)
    return False


def enqueue_rerun(study: Any, trial: Any) -> bool:
    """Fail a crashed (or interrupted) trial and enqueue its parameters again, unless another worker already did:
    the state change is atomic in the storage, so only one worker wins and enqueues. Returns whether this one did."""
    from optuna.trial import TrialState

    if trial.state == TrialState.RUNNING:
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except RuntimeError:  # finished meanwhile (by its worker, or failed by another one)
            return False
    study.enqueue_trial(trial.params, user_attrs={"ssnas_retry_of": trial.number})
    return True


def recover(study: Any, grace_s: float = 0) -> list[int]:
    """Trials a crash left RUNNING (their process on this machine is gone, or with `grace_s`, on a journal storage,
    their heartbeat attribute is older than that) and legacy interrupted trials without a re-run: fail them and
    enqueue their parameters again (each once, see `enqueue_rerun`). Returns the trial numbers re-enqueued."""
    from optuna.trial import TrialState

    host, again, now = socket.gethostname(), [], time.time()
    for members in lineages(study.get_trials(deepcopy=False)).values():
        t = members[-1]
        if t.state == TrialState.RUNNING:
            beat = t.user_attrs.get("ssnas_alive")
            stale = grace_s and beat is not None and now - float(beat) > grace_s
            mine = t.user_attrs.get("ssnas_host", host) == host
            pid = t.user_attrs.get("ssnas_pid")
            if not stale and not (mine and pid is not None and not _alive(int(pid))):
                continue
        elif not (t.state == TrialState.FAIL and t.user_attrs.get("ssnas_interrupted")):
            continue
        if len(members) > MAX_RETRIES and t.state == TrialState.RUNNING:  # crashed too often: fails for good
            with contextlib.suppress(RuntimeError):
                study.tell(t.number, state=TrialState.FAIL)
            continue
        if enqueue_rerun(study, t):
            again.append(t.number)
    return again


def to_json(params: Iterable[Tunable]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(p) for p in params]


def from_json(data: Iterable[dict[str, Any]]) -> tuple[Tunable, ...]:
    return tuple(Tunable(**d) for d in data)


def distributions(params: Iterable[Tunable]) -> dict[str, Any]:
    from optuna.distributions import FloatDistribution, IntDistribution

    return {p.key: IntDistribution(int(p.low), int(p.high), log=p.log) if p.kind == "int"
            else FloatDistribution(p.low, p.high, log=p.log) for p in params}
