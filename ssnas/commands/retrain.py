"""`ssnas retrain`: stack a genotype into the full network and pretrain it with an objective."""
from __future__ import annotations

import argparse

from ssnas.commands.flags import add_config_args, config_from_args
from ssnas.continual import run_continual
from ssnas.errors import UserError
from ssnas.retrain import RetrainConfig, run_retrain
from ssnas.runs import distributed

ORDER = 20


def run(ns: argparse.Namespace) -> int:
    cfg = config_from_args(ns, RetrainConfig)
    if cfg.continual.steps:
        if distributed.torchrun_env() is not None:
            raise UserError("--continual-steps runs on one process; start it without torchrun")
        result = run_continual(cfg)
        knn, linear = result.record["knn"], result.record["linear"]
        print(f"continual ({cfg.continual.method}, {cfg.continual.steps} steps): kNN average accuracy "
              f"{100 * knn['average_accuracy'][-1]:.2f}%, forgetting {100 * knn['forgetting'][-1]:.2f}; linear "
              f"average accuracy {100 * linear['average_accuracy'][-1]:.2f}%, forgetting "
              f"{100 * linear['forgetting'][-1]:.2f}; every step in {result.out / 'continual.json'}")
        print(f"final network: {result.out / 'checkpoint.pt'}; evaluate with: ssnas eval {result.out} --protocol linear")
        return 0
    with distributed.session(cfg.run.device) as ranks:
        result = run_retrain(cfg, ranks=ranks)
    if cfg.run.quiet or not ranks.is_main:
        return 0
    if not result.finished:
        print(f"stopped after {result.epochs_run} epoch(s) as asked; continue with: ssnas retrain --resume "
              f"--out {result.out}")
    if result.knn_top1 is not None:
        print(f"kNN monitor, last reading: top-1 {100 * result.knn_top1:.2f}%")
    print(f"pretrained network: {result.out / 'checkpoint.pt'}; evaluate with: ssnas eval {result.out} --protocol linear")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retrain", help="pretrain the full network of a found (or published) cell",
                       description="Builds the evaluation network of --arch (a genotype.json, a search run folder, "
                                   "DARTS_V1, DARTS_V2, a NAS-Bench-201 string such as '|nor_conv_3x3~0|+...|', or "
                                   "resnet18) and pretrains it with --objective. Unset --layers/--init-channels are "
                                   "the space's own network: DARTS 20 cells of 36 channels, NAS-Bench-201 5 cells per "
                                   "stage of 16. Writes checkpoint.pt (every epoch), config.json, network.json "
                                   "(sizes, parameters, FLOPs), metrics.jsonl and TensorBoard events into --out. "
                                   "--continual-steps K learns the data in K steps instead (continual.json: kNN "
                                   "and linear accuracy after each step, average accuracy, forgetting). On several "
                                   "processes: torchrun --nproc-per-node N -m ssnas retrain ... (--batch-size is per "
                                   "process; --sync-bn for BN over the global batch).")
    add_config_args(p, RetrainConfig)
    p.set_defaults(func=run)
