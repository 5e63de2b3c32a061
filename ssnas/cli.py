"""`ssnas` command line. `main(argv)` returns the exit code, so tests call it in-process.

User mistakes (UserError) print one line and exit 2; nothing here imports nni, optuna or tensorboard at
module level, so `ssnas --help` is quick.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Sequence

from ssnas import __version__
from ssnas.config import add_flags, flag_overrides, parse_set, resolve
from ssnas.errors import UserError


def _common(parser: argparse.ArgumentParser, cls: type) -> None:
    parser.add_argument("--config", metavar="FILE.toml", help="load settings from a TOML file (flags override it)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override any config key, e.g. --set objective.queue_size=4096 (repeatable)")
    add_flags(parser, cls)


def _resolve(ns: argparse.Namespace, cls: type) -> Any:
    return resolve(cls, ns.config, {**flag_overrides(ns, cls), **parse_set(ns.set)})


def cmd_search(ns: argparse.Namespace) -> int:
    from ssnas.search import SearchConfig, run_search

    cfg = _resolve(ns, SearchConfig)
    result = run_search(cfg)
    if not result.finished:
        print(f"stopped after {result.epochs_run} epoch(s) as asked; continue with: ssnas search --resume "
              f"--config {result.out / 'config.json'}")
    print(f"genotype: {result.out / 'genotype.json'}")
    print(json.dumps(result.genotype.to_json()))
    return 0


def cmd_bench(ns: argparse.Namespace) -> int:
    from ssnas import bench
    from ssnas.search import SearchConfig

    cfg = _resolve(ns, SearchConfig)
    if ns.what == "augment":
        row = bench.bench_augment(cfg, steps=ns.steps, warmup=ns.warmup, bench_subset=ns.bench_subset)
    else:
        row = bench.bench_search(cfg, steps=ns.steps, warmup=ns.warmup, bench_subset=ns.bench_subset)
    print(json.dumps(row) if ns.json else json.dumps(row, indent=2))
    return 0


def cmd_list(ns: argparse.Namespace) -> int:
    from ssnas import registry

    print("spaces:     " + ", ".join(registry.available_spaces()))
    print("objectives: " + ", ".join(registry.available_objectives()))
    for name in registry.available_spaces():
        published = getattr(registry.space(name), "PUBLISHED", {})
        if published:
            print(f"published {name} genotypes: " + ", ".join(sorted(published)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ssnas.search import SearchConfig

    parser = argparse.ArgumentParser(prog="ssnas", description="Self-supervised DARTS-style architecture search.")
    parser.add_argument("--version", action="version", version=f"ssnas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("search", help="search a cell with a (contrastive) objective",
                       description="DARTS supernet search; writes genotype.json, alphas.json, metrics.jsonl, "
                                   "TensorBoard events, config.json and checkpoint.pt into --out.")
    _common(p, SearchConfig)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("bench", help="time a hot path; prints JSON (images/s, s/step, peak memory)",
                       description="Times the real search step (arch + weight step, same code as `ssnas search`) "
                                   "or the augmentation, after a warm-up.")
    p.add_argument("what", choices=["search", "augment"])
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--bench-subset", type=int, default=2048, help="training images to draw batches from")
    p.add_argument("--json", action="store_true", help="one JSON line")
    _common(p, SearchConfig)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("list", help="list search spaces, objectives and published genotypes")
    p.set_defaults(func=cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = ns.func
    try:
        return func(ns)
    except UserError as e:
        print(f"ssnas: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ssnas: interrupted; the last finished epoch is checkpointed, continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
