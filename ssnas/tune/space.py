"""The study's search space, built from what owns each setting: the augmentation's `TUNABLE` ranges
(ssnas.data.augment) and the objective's `tunables()` (the shared knobs it uses, such as the temperature, and
its own options, such as CLSA's strong augmentation). An objective that reads no temperature (BYOL,
supervised) gets none tuned.

Optuna's distributions, NNI's search-space JSON, `ssnas tune --show-space` and the best config are all read off
these `Tunable`s. A parameter's name is its dotted config key, so a trial's parameters go straight through
`ssnas.config.apply_overrides` and mean the same thing in Optuna, in the NNI web UI and in `--config` files.
NNI's tuner process reads the ranges from the study's spec file (ssnas.tune.study), without importing this.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable

from ssnas import registry
from ssnas.config import Tunable
from ssnas.data.augment import TUNABLE as AUGMENT_TUNABLE
from ssnas.training.continual import TUNABLE as CONTINUAL_TUNABLE
from ssnas.training.objective import ObjectiveConfig


def space_for(objective: str, continual: bool = False) -> tuple[Tunable, ...]:
    """The parameters a study over `objective` tunes; `continual`: a continual retraining's too
    (ssnas.training.continual, with --continual-steps)."""
    return AUGMENT_TUNABLE + registry.objective(objective).tunables() + (CONTINUAL_TUNABLE if continual else ())


def every_tunable() -> tuple[Tunable, ...]:
    """The union over every registered objective, augmentation first, continual retraining's last (what
    --show-space lists)."""
    out = list(AUGMENT_TUNABLE)
    for name in registry.available_objectives():
        out += [p for p in registry.objective(name).tunables() if p not in out]
    return tuple(out) + CONTINUAL_TUNABLE


def is_option(p: Tunable) -> bool:
    """Whether `p` sets an objective's own option (a key under `objective.` that ObjectiveConfig itself lacks)."""
    section, _, name = p.key.partition(".")
    return section == "objective" and name not in {f.name for f in dataclasses.fields(ObjectiveConfig)}


def nni_search_space(params: Iterable[Tunable]) -> dict[str, Any]:
    """The same ranges in NNI's search-space format (shown on the web UI's overview page); NNI's randint is
    [low, high)."""
    return {p.key: {"_type": "randint", "_value": [int(p.low), int(p.high) + 1]} if p.kind == "int"
            else {"_type": "loguniform" if p.log else "uniform", "_value": [p.low, p.high]} for p in params}


def suggest(trial: Any, params: Iterable[Tunable]) -> dict[str, Any]:
    """A trial's values, by config key (an NNI-launched trial already holds them: Optuna then returns those)."""
    out: dict[str, Any] = {}
    for p in params:
        if p.kind == "int":
            out[p.key] = trial.suggest_int(p.key, int(p.low), int(p.high), log=p.log)
        else:
            out[p.key] = trial.suggest_float(p.key, p.low, p.high, log=p.log)
    return out


def describe(objective: str, continual: bool = False) -> str:
    """The table `ssnas tune --show-space` prints: every declared parameter, marked where `objective` (or a study
    without --continual-steps) lacks it."""
    cls = registry.objective(objective)
    mine = set(space_for(objective, continual))
    rows = [("key", "kind", "range", "scale", "source")]
    for p in every_tunable():
        low, high = p.end("low"), p.end("high")
        missing = "with --continual-steps only" if p in CONTINUAL_TUNABLE else f"not for {cls.name}"
        key = p.key if p in mine else f"{p.key} ({missing})"
        rows.append((key, p.kind, f"[{low}, {high}]", "log" if p.log else "linear", p.why))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"search space of `ssnas tune --objective {cls.name}` (declared by the augmentation and the objective):"]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows]
    return "\n".join(lines)
