"""`ssnas eval RUN_DIR`: linear probe, kNN, fine-tuning with few labels, or supervised training from scratch."""
from __future__ import annotations

import argparse
from pathlib import Path

from ssnas.commands.flags import add_config_args, flag_overrides, parse_set
from ssnas.config import apply_overrides, flatten, load_file
from ssnas.errors import UserError
from ssnas.evaluate import EvalConfig, evaluate

ORDER = 30


def resolve(ns: argparse.Namespace):
    """defaults < the run's data and network settings < --config < flags and --set."""
    cfg = EvalConfig()
    saved = Path(ns.run_dir) / "config.json"
    if saved.is_file():
        try:
            data = load_file(saved).get("data")
        except UserError:
            data = None  # load_run says what is wrong with the folder
        if isinstance(data, dict):  # evaluate on the data the run was trained on
            apply_overrides(cfg, flatten({"data": data}))
    if ns.config:
        apply_overrides(cfg, flatten(load_file(ns.config)))
    return apply_overrides(cfg, {**flag_overrides(ns, EvalConfig), **parse_set(ns.set)})


def run(ns: argparse.Namespace) -> int:
    record = evaluate(ns.run_dir, resolve(ns))
    print(f"{record['protocol']} ({record['tag']}): top-1 {record['top1']:.2f}% on {record['n_test']} test images; "
          f"{record['params'] / 1e6:.3f}M parameters")
    print(f"written: {Path(ns.run_dir) / ('eval-' + record['tag'] + '.json')}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a retrained network (linear, knn, finetune, supervised)",
                       description="Evaluates the network in RUN_DIR (from `ssnas retrain`) and writes eval.json and "
                                   "eval-<protocol>.json there: accuracy, protocol, config, parameters, FLOPs. "
                                   "--protocol supervised trains the run's architecture from scratch with labels "
                                   "(DARTS's protocol); --random-init evaluates untrained weights as a baseline.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a retrain run folder (or, with --arch, any output folder)")
    add_config_args(p, EvalConfig)
    p.add_argument("--supervised", dest="protocol", action="store_const", const="supervised",
                   help="the same as --protocol supervised: DARTS's supervised training from scratch")
    p.set_defaults(func=run)
