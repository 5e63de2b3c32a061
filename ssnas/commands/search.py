"""`ssnas search`: DARTS supernet search driven by an objective."""
from __future__ import annotations

import argparse
import json

from ssnas.config import add_config_args, config_from_args

ORDER = 10


def run(ns: argparse.Namespace) -> int:
    from ssnas.search import SearchConfig, run_search

    result = run_search(config_from_args(ns, SearchConfig))
    if not result.finished:
        print(f"stopped after {result.epochs_run} epoch(s) as asked; continue with: ssnas search --resume "
              f"--config {result.out / 'config.json'}")
    print(f"genotype: {result.out / 'genotype.json'}")
    print(json.dumps(result.genotype.to_json()))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from ssnas.search import SearchConfig

    p = sub.add_parser("search", help="search a cell with a (contrastive) objective",
                       description="DARTS supernet search; writes genotype.json, alphas.json, metrics.jsonl, "
                                   "TensorBoard events, config.json and checkpoint.pt into --out.")
    add_config_args(p, SearchConfig)
    p.set_defaults(func=run)
