"""Name -> module for the things users choose by name: search spaces, objectives and search strategies.

Two ways in, both without editing ssnas:
- built in: a module `search_spaces/<name>.py` (installed as `ssnas.search_spaces.<name>`) or `objectives/<name>.py`
  (`ssnas.objectives.<name>`); dropping in a file is the whole registration;
- from another installed package: a Python entry point in the group `ssnas.search_spaces` or `ssnas.objectives`,
  `name = "package.module"` (the module, as a built-in file would be; an objective may also name its class,
  `"package.module:Class"`). tests/plugin_example/ is such a package.

A space fulfils `ssnas.nas.space.SearchSpace`; an objective module defines one `ssnas.training.objective.Objective`
subclass; a search strategy is a module `ssnas/strategies/<name>.py` defining one `ssnas.strategies.base.Strategy`
subclass (built in only). This is the only place that maps names to those modules: the loops ask here, and never import a space or
an objective. A built-in name wins over a plugin's of the same name (`ssnas list` says so). Entry points are read
once per process; `refresh()` reads them again (for a package installed while the process runs).
"""
from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any

from ssnas import objectives, search_spaces, strategies
from ssnas.errors import UserError
from ssnas.nas.space import REQUIRED
from ssnas.strategies.base import Strategy
from ssnas.training.objective import Objective

# the space of a genotype JSON without a "space" field (every genotype ssnas writes has one)
DEFAULT_SPACE = "darts"
GROUPS = {"space": "ssnas.search_spaces", "objective": "ssnas.objectives"}


@dataclass(frozen=True)
class Plugin:
    """An entry point that registers a space or an objective from another package."""

    name: str  # normalised
    value: str  # "package.module" or "package.module:attr"
    distribution: str  # "name version" of the package that declares it

    def load(self, kind: str) -> Any:
        try:
            return importlib.metadata.EntryPoint(self.name, self.value, GROUPS[kind]).load()
        except Exception as e:  # a broken plugin is the plugin's problem; say whose, on one line
            raise UserError(f"cannot load the {kind} {self.name!r} that {self.distribution} registers as "
                            f"{self.value}: {type(e).__name__}: {e}; fix or uninstall that package") from None


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _builtin(package: ModuleType) -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))


@lru_cache(maxsize=None)
def _plugins(kind: str) -> dict[str, Plugin]:
    found: dict[str, Plugin] = {}
    for ep in importlib.metadata.entry_points(group=GROUPS[kind]):
        dist = getattr(ep, "dist", None)
        where = f"{dist.name} {dist.version}" if dist is not None else "an installed package"
        found.setdefault(_normalise(ep.name), Plugin(_normalise(ep.name), ep.value, where))
    return found


def refresh() -> None:
    """Read the entry points again (they are read once per process)."""
    _plugins.cache_clear()


def plugins(kind: str) -> dict[str, Plugin]:
    """The `kind` ("space" or "objective") plugins other packages register, by name (shadowed ones included)."""
    return dict(_plugins(kind))


def available_spaces() -> list[str]:
    return sorted({*_builtin(search_spaces), *_plugins("space")})


def available_objectives() -> list[str]:
    return sorted({*_builtin(objectives), *_plugins("objective")})


def source(kind: str, name: str) -> str:
    """Where `name` comes from: 'built in (ssnas.search_spaces.darts)' or 'plugin: pkg 1.0 (pkg.module)'; a
    plugin hidden by a built-in of the same name says so."""
    key = _normalise(name)
    package = search_spaces if kind == "space" else objectives
    plugin = _plugins(kind).get(key)
    if key in _builtin(package):
        hidden = f"; {plugin.distribution}'s {plugin.value} of the same name is ignored" if plugin else ""
        return f"built in ({package.__name__}.{key}){hidden}"
    if plugin is None:
        raise UserError(f"unknown {kind} {name!r}")
    return f"plugin: {plugin.distribution} ({plugin.value})"


def _load(kind: str, name: str) -> tuple[Any, str]:
    """(the module or object registered as `name`, where it comes from, for messages): built in first."""
    key = _normalise(name)
    package = search_spaces if kind == "space" else objectives
    if key in _builtin(package):
        folder = "search_spaces" if kind == "space" else "objectives"
        return importlib.import_module(f"{package.__name__}.{key}"), f"{folder}/{key}.py"
    plugin = _plugins(kind).get(key)
    if plugin is None:
        names = available_spaces() if kind == "space" else available_objectives()
        raise UserError(f"unknown {kind} {name!r}; available: {', '.join(names)}")
    return plugin.load(kind), f"{plugin.value} (from {plugin.distribution})"


def space(name: str) -> Any:
    """The space module `name`; a UserError names a missing contract member (see ssnas.nas.space.SearchSpace)."""
    key = _normalise(name)
    module, where = _load("space", name)
    missing = [member for member in REQUIRED if not hasattr(module, member)]
    if missing:
        raise UserError(f"{where} does not fulfil the space contract: it lacks {', '.join(missing)} "
                        f"(see docs/spaces.md)")
    if _normalise(module.NAME) != key:
        raise UserError(f"{where} names itself {module.NAME!r} but is registered as {key!r}; make NAME match")
    return module


def objective(name: str) -> type[Objective]:
    key = _normalise(name)
    loaded, where = _load("objective", name)
    if isinstance(loaded, ModuleType):
        found = [v for v in vars(loaded).values() if isinstance(v, type) and issubclass(v, Objective)
                 and v is not Objective and v.__module__ == loaded.__name__]
    else:
        found = [loaded] if isinstance(loaded, type) and issubclass(loaded, Objective) else []
    if len(found) != 1:
        raise UserError(f"{where} must define exactly one Objective subclass, found {len(found)}")
    if found[0].name and _normalise(found[0].name) != key:
        raise UserError(f"{where}: {found[0].__name__}.name is {found[0].name!r} but it is registered as {key!r}; "
                        f"make them match")
    return found[0]


def available_strategies() -> list[str]:
    """Strategy names as users type them (`beta-darts` for ssnas/strategies/beta_darts.py)."""
    return [name.replace("_", "-") for name in _builtin(strategies) if name != "base"]


def strategy(name: str) -> type[Strategy]:
    """The search strategy `name` (`ssnas/strategies/<name>.py`, dashes or underscores)."""
    key = _normalise(name)
    if key == "base" or key.replace("_", "-") not in available_strategies():
        raise UserError(f"unknown strategy {name!r}; available: {', '.join(available_strategies())}")
    module = importlib.import_module(f"{strategies.__name__}.{key}")
    found = [v for v in vars(module).values()
             if isinstance(v, type) and issubclass(v, Strategy) and v.__module__ == module.__name__]
    if len(found) != 1:
        raise UserError(f"ssnas/strategies/{key}.py must define exactly one Strategy subclass, found {len(found)}")
    return found[0]
