"""The Optuna side of a study, kept free of torch: opening it, recovering crashed trials, counting finished ones.
NNI's tuner process imports only this (and ssnas.config's `Tunable`), so it starts in about a second: the study's
ranges travel in its spec file as JSON (`to_json` / `from_json`)."""
from __future__ import annotations

import dataclasses
import os
import socket
from typing import Any, Iterable

from ssnas.config import Tunable
from ssnas.errors import UserError


def trial_seed(seed: int, index: int) -> int:
    """The seed of the sampler's draws for the `index`-th sampled trial of a study seeded `seed`."""
    return (seed * 1_000_003 + index * 7_919 + 17) % 2**32


def sampled_index(study: Any, number: int) -> int:
    """A trial's place among the trials the sampler drew: its number, less the re-runs of crashed trials before
    it (those are enqueued with the crashed trial's parameters and draw nothing). So the n-th drawn trial has
    index n whether or not the study crashed and resumed before it."""
    return number - sum(1 for t in study.get_trials(deepcopy=False)
                        if t.number < number and "ssnas_retry_of" in t.user_attrs)


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


def open_study(url: str, name: str, pruner: Any = None, seed: int = 0, create: bool = True) -> Any:
    """The study in `url`, created if asked, sampled by `seeded_sampler(seed)`."""
    import optuna

    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}  # NNI's trial and tuner share it
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        if create:
            study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                        load_if_exists=True, pruner=pruner)
        else:
            study = optuna.load_study(study_name=name, storage=storage, pruner=pruner)
    except KeyError:
        raise UserError(f"no study named {name!r} in {url}; start it with ssnas tune --study {name}") from None
    except ImportError as e:
        raise UserError(f"cannot open --storage {url}: {e}; install its database driver or use "
                        f"sqlite:///FILE") from None
    except Exception as e:  # SQLAlchemy: bad URL, unreachable server, not a database
        if type(e).__module__.split(".")[0] not in ("sqlalchemy", "optuna"):
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


def recover(study: Any) -> list[int]:
    """Trials a crash left RUNNING (their process on this machine is gone) or that Ctrl-C interrupted: mark them
    failed and enqueue their parameters again. Returns the trial numbers re-enqueued."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs["ssnas_retry_of"] for t in trials if "ssnas_retry_of" in t.user_attrs}
    host, again = socket.gethostname(), []
    for t in trials:
        if t.number in retried:
            continue
        if t.state == TrialState.RUNNING:
            if t.user_attrs.get("ssnas_host", host) != host:
                continue  # another machine's worker: it may well be alive
            pid = t.user_attrs.get("ssnas_pid")
            if pid is not None and _alive(int(pid)):
                continue
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        elif not (t.state == TrialState.FAIL and t.user_attrs.get("ssnas_interrupted")):
            continue
        study.enqueue_trial(t.params, user_attrs={"ssnas_retry_of": t.number})
        again.append(t.number)
    return again


def finished(study: Any) -> int:
    """Trials that count towards --trials: complete, pruned, or failed on their own (not crashed and re-run)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs["ssnas_retry_of"] for t in trials if "ssnas_retry_of" in t.user_attrs}
    return sum(1 for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        t.state == TrialState.FAIL and t.number not in retried and not t.user_attrs.get("ssnas_interrupted")))


def to_json(params: Iterable[Tunable]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(p) for p in params]


def from_json(data: Iterable[dict[str, Any]]) -> tuple[Tunable, ...]:
    return tuple(Tunable(**d) for d in data)


def distributions(params: Iterable[Tunable]) -> dict[str, Any]:
    from optuna.distributions import FloatDistribution, IntDistribution

    return {p.key: IntDistribution(int(p.low), int(p.high), log=p.log) if p.kind == "int"
            else FloatDistribution(p.low, p.high, log=p.log) for p in params}
