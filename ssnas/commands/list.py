"""`ssnas list`: what can be plugged in."""
from __future__ import annotations

import argparse

from ssnas import registry
from ssnas.training.continual import METHODS

ORDER = 90


def run(ns: argparse.Namespace) -> int:
    print("spaces:     " + ", ".join(registry.available_spaces()))
    print("objectives: " + ", ".join(registry.available_objectives()))
    continual = [n for n in registry.available_objectives() if registry.objective(n).has_embed()]
    print("continual retraining (ssnas retrain --continual-steps K --continual-method M): " + ", ".join(METHODS)
          + "; ccl distils the embeddings of " + ", ".join(continual))
    for name in registry.available_spaces():
        published = getattr(registry.space(name), "PUBLISHED", {})
        if published:
            print(f"published {name} genotypes: " + ", ".join(sorted(published)))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("list", help="list search spaces, objectives and published genotypes").set_defaults(func=run)
