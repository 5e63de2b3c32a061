"""`ssnas bench`: time a hot path through the same code the real loops run; prints JSON."""
from __future__ import annotations

import argparse
import json

from ssnas.config import add_config_args, config_from_args

ORDER = 80


def run(ns: argparse.Namespace) -> int:
    from ssnas import bench
    from ssnas.search import SearchConfig

    cfg = config_from_args(ns, SearchConfig)
    measure = {"search": bench.bench_search, "augment": bench.bench_augment}[ns.what]
    row = measure(cfg, steps=ns.steps, warmup=ns.warmup, bench_subset=ns.bench_subset)
    print(json.dumps(row) if ns.json else json.dumps(row, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from ssnas.search import SearchConfig

    p = sub.add_parser("bench", help="time a hot path; prints JSON (images/s, s/step, peak memory)",
                       description="Times the real search step (arch + weight step, the code of `ssnas search`) "
                                   "or the augmentation, after a warm-up.")
    p.add_argument("what", choices=["search", "augment"])
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--bench-subset", type=int, default=2048, help="training images to draw batches from")
    p.add_argument("--json", action="store_true", help="one JSON line")
    add_config_args(p, SearchConfig)
    p.set_defaults(func=run)
