"""Name -> module for the two things users plug in: search spaces and objectives.

A space is a module `search_spaces/<name>.py` (installed as `ssnas.search_spaces.<name>`) that fulfils
`ssnas.nas.space.SearchSpace`; an objective is a module `objectives/<name>.py` (`ssnas.objectives.<name>`)
defining one `ssnas.training.objective.Objective` subclass. Dropping in a file is the whole registration. This
is the only place that maps names to those modules: the loops ask here, and never import a space or an objective.
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from ssnas import objectives, search_spaces
from ssnas.errors import UserError
from ssnas.nas.space import REQUIRED
from ssnas.training.objective import Objective

# the space of a genotype JSON without a "space" field (every genotype ssnas writes has one)
DEFAULT_SPACE = "darts"


def _available(package: ModuleType) -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))


def available_spaces() -> list[str]:
    return _available(search_spaces)


def available_objectives() -> list[str]:
    return _available(objectives)


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def space(name: str) -> ModuleType:
    """The space module `name`; a UserError names a missing contract member (see ssnas.nas.space.SearchSpace)."""
    key = _normalise(name)
    if key not in available_spaces():
        raise UserError(f"unknown space {name!r}; available: {', '.join(available_spaces())}")
    module = importlib.import_module(f"{search_spaces.__name__}.{key}")
    missing = [member for member in REQUIRED if not hasattr(module, member)]
    if missing:
        raise UserError(f"search_spaces/{key}.py does not fulfil the space contract: it lacks {', '.join(missing)} "
                        f"(see docs/spaces.md)")
    return module


def objective(name: str) -> type[Objective]:
    key = _normalise(name)
    if key not in available_objectives():
        raise UserError(f"unknown objective {name!r}; available: {', '.join(available_objectives())}")
    module = importlib.import_module(f"{objectives.__name__}.{key}")
    found = [v for v in vars(module).values()
             if isinstance(v, type) and issubclass(v, Objective) and v is not Objective and v.__module__ == module.__name__]
    if len(found) != 1:
        raise UserError(f"objectives/{key}.py must define exactly one Objective subclass, found {len(found)}")
    return found[0]
