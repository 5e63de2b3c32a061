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


def open_study(url: str, name: str, pruner: Any = None, seed: int = 0, create: bool = True) -> Any:
    """The study in `url`, created if asked; TPE seeded with seed + trials so far, so a resumed study does not
    draw its first trials' random start-up parameters again."""
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
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.get_trials(deepcopy=False)))
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
