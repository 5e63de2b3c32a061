"""`ssnas search`: DARTS supernet search driven by an objective."""
from __future__ import annotations

import argparse
import json
from typing import Any

from ssnas.commands.flags import add_config_args, add_launch_args, config_from_args
from ssnas.errors import UserError
from ssnas.nni_bridge.launch import Launch, search_experiment
from ssnas.runs import distributed
from ssnas.search import SearchConfig, run_search

ORDER = 10


def run(ns: argparse.Namespace) -> int:
    cfg = config_from_args(ns, SearchConfig)
    if ns.nni:
        if distributed.torchrun_env() is not None:
            raise UserError("--nni starts its own trial process; run `ssnas search --nni` without torchrun")
        return _run_in_nni(cfg, ns)
    with distributed.session(cfg.run.device) as ranks:
        result = run_search(cfg, ranks=ranks)
    if cfg.run.quiet or not ranks.is_main:
        return 0
    if not result.finished:
        print(f"stopped after {result.epochs_run} epoch(s) as asked; continue with: ssnas search --resume "
              f"--out {result.out}")
    print(f"genotype: {result.out / 'genotype.json'}")
    print(json.dumps(result.genotype.to_json()))
    return 0


def _run_in_nni(cfg: Any, ns: argparse.Namespace) -> int:
    """The search as the single trial of an NNI experiment: epochs and the genotype show in the web UI."""
    import sys


    status, out = search_experiment(cfg, Launch(ns.host, ns.port, ns.keep_ui, ns.tuner_wait))
    path = out / "genotype.json"
    genotype = json.loads(path.read_text()) if path.is_file() else {}
    meta = genotype.pop("meta", {})
    if not genotype or meta.get("epoch") != meta.get("epochs"):  # the run, not the UI's fate, says if it finished
        saved = (f"epochs 1-{meta['epoch']} of {meta['epochs']} are saved in {out / 'checkpoint.pt'}"
                 if meta.get("epoch") else "no epoch had finished, so nothing was checkpointed")
        print(f"the search was stopped; {saved}; continue with: ssnas search --nni --resume --out {out}",
              file=sys.stderr)
        return 130 if status == "INTERRUPTED" else 0
    print(f"genotype: {out / 'genotype.json'}")
    print(json.dumps(genotype))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search a cell with a (contrastive) objective",
                       description="DARTS supernet search; writes genotype.json, alphas.json, metrics.jsonl, "
                                   "TensorBoard events, config.json and checkpoint.pt into --out. On several "
                                   "processes: torchrun --nproc-per-node N -m ssnas search ... (--batch-size is "
                                   "per process).")
    add_config_args(p, SearchConfig)
    add_launch_args(p, "the search")
    p.set_defaults(func=run)
