"""The study's search space, declared once.

Optuna's distributions, NNI's search-space JSON, `ssnas tune --show-space` and the best config are all read off
`SPACE`. A parameter's name is its dotted config key, so a trial's parameters go straight through
`ssnas.config.apply_overrides` and mean the same thing in Optuna, in the NNI web UI and in `--config` files.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Param:
    key: str  # dotted config key, e.g. "augment.jitter_strength"
    kind: str  # "float" or "int"
    low: float
    high: float
    log: bool = False
    why: str = ""  # where the range comes from

    @property
    def option(self) -> str | None:
        """The objective option this parameter sets (a key under `objective.` that ObjectiveConfig itself lacks)."""
        from ssnas.training.objective import ObjectiveConfig  # torch: not needed by NNI's tuner process

        section, _, name = self.key.partition(".")
        shared = {f.name for f in dataclasses.fields(ObjectiveConfig)}
        return name if section == "objective" and name not in shared else None

    def applies_to(self, objective_cls: type) -> bool:
        """Objective options only where the objective has them (CLSA's strong augmentation, for instance)."""
        option = self.option
        return option is None or option in {f.name for f in dataclasses.fields(objective_cls.Options)}

    def distribution(self) -> Any:
        from optuna.distributions import FloatDistribution, IntDistribution

        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(self.low, self.high, log=self.log)

    def nni(self) -> dict[str, Any]:
        """The same range in NNI's search-space format (shown on the web UI's overview page)."""
        if self.kind == "int":  # NNI's randint is [low, high)
            return {"_type": "randint", "_value": [int(self.low), int(self.high) + 1]}
        return {"_type": "loguniform" if self.log else "uniform", "_value": [self.low, self.high]}

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and self.low <= value <= self.high and (
            self.kind != "int" or float(value).is_integer())


SPACE: tuple[Param, ...] = (
    Param("augment.jitter_strength", "float", 0.1, 1.0,
          why="colour distortion strength s; SimCLR App. B.9 uses 0.5 on CIFAR-10"),
    Param("augment.crop_scale_min", "float", 0.08, 0.5,
          why="smallest crop area; SimCLR 0.08, CLSA's weak view 0.2"),
    Param("augment.crop_scale_max", "float", 0.6, 1.0,
          why="largest crop area; SimCLR and CLSA 1.0 (always above the smallest)"),
    Param("augment.grayscale_p", "float", 0.0, 0.5, why="random grayscale probability; SimCLR App. A: 0.2"),
    Param("objective.aug_times", "int", 1, 8, why="CLSA strong ops per image; reference --aug_times 5"),
    Param("objective.magnitude", "int", 2, 10,
          why="CLSA RandAugment magnitude m (levels 1..m-1); reference 10, valid 2..10"),
    Param("objective.temperature", "float", 0.05, 1.0, log=True,
          why="contrastive temperature; SimCLR App. B.9 grid {0.1, 0.5, 1.0}, CLSA/MoCo 0.2"),
)


def space_for(objective: str) -> tuple[Param, ...]:
    """The parameters a study over `objective` tunes."""
    from ssnas import registry

    cls = registry.objective(objective)
    return tuple(p for p in SPACE if p.applies_to(cls))


def distributions(params: tuple[Param, ...]) -> dict[str, Any]:
    return {p.key: p.distribution() for p in params}


def nni_search_space(params: tuple[Param, ...]) -> dict[str, Any]:
    return {p.key: p.nni() for p in params}


def suggest(trial: Any, params: tuple[Param, ...]) -> dict[str, Any]:
    """A trial's values, by config key (an NNI-launched trial already holds them: Optuna then returns those)."""
    out: dict[str, Any] = {}
    for p in params:
        if p.kind == "int":
            out[p.key] = trial.suggest_int(p.key, int(p.low), int(p.high), log=p.log)
        else:
            out[p.key] = trial.suggest_float(p.key, p.low, p.high, log=p.log)
    return out


def describe(objective: str) -> str:
    """The table `ssnas tune --show-space` prints: every declared parameter, marked where `objective` lacks it."""
    from ssnas import registry

    cls = registry.objective(objective)
    rows = [("key", "kind", "range", "scale", "source")]
    for p in SPACE:
        low, high = (int(p.low), int(p.high)) if p.kind == "int" else (p.low, p.high)
        key = p.key if p.applies_to(cls) else f"{p.key} (not for {cls.name})"
        rows.append((key, p.kind, f"[{low}, {high}]", "log" if p.log else "linear", p.why))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"search space of `ssnas tune --objective {cls.name}` (declared in ssnas/tune_space.py):"]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows]
    return "\n".join(lines)

