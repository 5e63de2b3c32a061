"""Name -> module for the two things users plug in: search spaces and objectives.

A space is a module `search_spaces/<name>.py`; an objective is a module `objectives/<name>.py` defining one
`Objective` subclass. Dropping in a file is the whole registration.
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from ssnas import objectives, search_spaces
from ssnas.errors import UserError
from ssnas.training.objective import Objective


def _available(package: ModuleType) -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))


def available_spaces() -> list[str]:
    return _available(search_spaces)


def available_objectives() -> list[str]:
    return _available(objectives)


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def space(name: str) -> ModuleType:
    key = _normalise(name)
    if key not in available_spaces():
        raise UserError(f"unknown space {name!r}; available: {', '.join(available_spaces())}")
    return importlib.import_module(f"{search_spaces.__name__}.{key}")


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
