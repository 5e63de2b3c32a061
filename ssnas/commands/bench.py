"""`ssnas bench search|retrain|augment`: time a hot path through the same code the real loops run; prints JSON."""
from __future__ import annotations

import argparse
import json

from ssnas import bench
from ssnas.commands.flags import add_config_args, config_from_args
from ssnas.retrain import RetrainConfig
from ssnas.runs import distributed
from ssnas.search import SearchConfig

ORDER = 80


def run(ns: argparse.Namespace) -> int:
    cfg = config_from_args(ns, RetrainConfig if ns.what == "retrain" else SearchConfig)
    with distributed.session(cfg.run.device) as ranks:  # under torchrun: every rank steps, rank 0 reports
        if ns.what == "retrain":
            row = bench.bench_retrain(cfg, steps=ns.steps, warmup=ns.warmup, bench_subset=ns.bench_subset,
                                      compare=not ns.no_compare, ranks=ranks)
        elif ns.what == "search":
            row = bench.bench_search(cfg, steps=ns.steps, warmup=ns.warmup, bench_subset=ns.bench_subset, ranks=ranks)
        else:
            row = bench.bench_augment(cfg, steps=ns.steps, warmup=ns.warmup, bench_subset=ns.bench_subset)
    if ranks.is_main:
        print(json.dumps(row) if ns.json else json.dumps(row, indent=2))
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--bench-subset", type=int, default=2048, help="training images to draw batches from")
    p.add_argument("--json", action="store_true", help="one JSON line")
    p.set_defaults(func=run)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time a hot path; prints JSON (images/s, s/step, peak memory)",
                       description="Times a hot path after a warm-up, through the code the real loops run.")
    kinds = p.add_subparsers(dest="what", required=True, metavar="{search,retrain,augment}")
    search = kinds.add_parser("search", help="one search step: views + architecture step + weight step",
                              description="Times `Searcher.train_step`, the step of `ssnas search`, with the same "
                                          "flags as `ssnas search`.")
    _common(search)
    add_config_args(search, SearchConfig)
    augment = kinds.add_parser("augment", help="batched per-sample views against torchvision per image",
                               description="Times the batched view maker against the per-image torchvision "
                                           "pipeline on the same images.")
    _common(augment)
    add_config_args(augment, SearchConfig)
    retrain = kinds.add_parser("retrain", help="one pretraining step of `ssnas retrain` (fast vs textbook kernels)",
                               description="Times `Pretrainer.step`, the step of `ssnas retrain`, with the same "
                                           "flags as `ssnas retrain`; also the textbook kernels in the same run.")
    _common(retrain)
    retrain.add_argument("--no-compare", action="store_true", help="skip the textbook-kernel run")
    add_config_args(retrain, RetrainConfig)
