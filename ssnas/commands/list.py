"""`ssnas list`: what can be plugged in, and where each piece comes from (built in, or a package's entry point)."""
from __future__ import annotations

import argparse

from ssnas import registry
from ssnas.training.continual import METHODS

ORDER = 90


def run(ns: argparse.Namespace) -> int:
    for kind, names in (("space", registry.available_spaces()), ("objective", registry.available_objectives())):
        print(f"{kind}s:")
        width = max(map(len, names))
        for name in names:
            print(f"  {name:<{width}}  {registry.source(kind, name)}")
    continual = [n for n in registry.available_objectives() if registry.objective(n).has_embed()]
    print("continual retraining (ssnas retrain --continual-steps K --continual-method M): " + ", ".join(METHODS)
          + "; ccl distils the embeddings of " + ", ".join(continual))
    print("strategies (--strategy; options with --set strategy.KEY=VALUE):")
    names = registry.available_strategies()
    for name in names:
        print(f"  {name:<{max(map(len, names))}}  {registry.strategy(name).summary}")
    for name in registry.available_spaces():
        published = getattr(registry.space(name), "PUBLISHED", {})
        if published:
            print(f"published {name} genotypes: " + ", ".join(sorted(published)))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("list", help="list search spaces, objectives (built in or from plugins), search strategies and published genotypes",
                   description="Spaces and objectives come built in or from installed packages that declare entry "
                               "points in the groups ssnas.search_spaces and ssnas.objectives (docs/spaces.md, "
                               "docs/objectives.md).").set_defaults(func=run)
