"""`ssnas tune`: an Optuna study over augmentation and loss settings; with --nni, run as an NNI experiment.

The trained run's settings come from the same flags as `ssnas search` (--target supernet) or `ssnas retrain`
(--target genotype): a flag both commands know, such as --layers, sets the key of the target's config
(supernet.layers or network.layers).
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ssnas.commands.flags import add_flags, add_launch_args, flag_name, flag_overrides, parse_set
from ssnas.config import apply_overrides, flatten, leaf_fields, load_file
from ssnas.errors import UserError
from ssnas.nni_bridge.launch import Launch, TrialResources, stop, tune_config_yaml, tune_experiment
from ssnas.tune.session import TARGETS, TRIAL_DEFAULTS, TuneConfig, config_class, is_continual, run_tune
from ssnas.tune.space import describe

ORDER = 30
# Keys of the trained config without a flag here: the session scores with its own kNN settings (--knn-k,
# --knn-temperature; retrain's test-set monitor is off in trials), and a study resumes by itself.
SKIPPED_KEYS = ("knn.", "run.resume", "run.force", "run.stop_after")


def _trained_flags() -> dict[str, dict[str, Any]]:
    """flag -> {target: (key, field, type)} over the search and retrain configs."""
    flags: dict[str, dict[str, Any]] = {}
    for target in TARGETS:
        for key, f, tp in leaf_fields(config_class(target)):
            if f.metadata.get("cli") is False or key.startswith(SKIPPED_KEYS):
                continue
            flags.setdefault(flag_name(key, f), {})[target] = (key, f, tp)
    return flags


def _add_trained_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "settings of the trained run (as for ssnas search / ssnas retrain)",
        "A trial is short: --epochs defaults to 10 here. --out is the tuning folder "
        "(default runs/tune): trials run in OUT/STUDY/trial-NNNN, the default storage is OUT/tune.db.")
    for flag, by_target in _trained_flags().items():
        key, f, tp = next(iter(by_target.values()))
        keys = {t: k for t, (k, _, _) in by_target.items()}
        if len(keys) == 1:
            where = f"--target {next(iter(keys))} only: {key}"
        elif len(set(keys.values())) > 1:
            where = "; ".join(f"{t}: {k}" for t, k in keys.items())
        else:
            where = key
        text = f"{f.metadata.get('help', '')} [{where}]".replace("%", "%%")
        dest = f"trained{flag}"
        if tp is bool:
            group.add_argument(flag, dest=dest, default=None, action=argparse.BooleanOptionalAction, help=text)
        else:
            group.add_argument(flag, dest=dest, default=None, metavar=key.rsplit(".", 1)[-1].upper(), help=text)


def trained_config(ns: argparse.Namespace, target: str) -> Any:
    """defaults < tuning defaults (short runs) < --config < flags and --set."""
    if target not in TARGETS:
        raise UserError(f"--target must be one of {', '.join(TARGETS)}, got {target!r}")
    overrides = {}
    for flag, by_target in _trained_flags().items():
        value = getattr(ns, f"trained{flag}", None)
        if value is None:
            continue
        if target not in by_target:
            other = next(iter(by_target))
            raise UserError(f"{flag} applies to --target {other}, not to --target {target}")
        overrides[by_target[target][0]] = value
    cfg = apply_overrides(config_class(target)(), TRIAL_DEFAULTS[target])
    if ns.config:
        apply_overrides(cfg, flatten(load_file(ns.config)))
    return apply_overrides(cfg, {**overrides, **parse_set(ns.set)})


def run(ns: argparse.Namespace) -> int:
    tune = apply_overrides(TuneConfig(), flag_overrides(ns, TuneConfig))
    if ns.stop:
        launch = Launch(ns.host, ns.port)
        stop(launch)
        print(f"stopped the NNI experiment at {launch.url}")
        return 0
    base = trained_config(ns, tune.target)
    if ns.show_space:
        print(describe(base.objective.name, continual=is_continual(tune.target, base)))
        return 0
    resources = TrialResources.load(ns.trial_concurrency, ns.trial_gpu_number, ns.training_service)
    if ns.print_nni_config:
        print(tune_config_yaml(tune, base, resources), end="")
        return 0
    if ns.nni:
        status, _ = tune_experiment(tune, base, Launch(ns.host, ns.port, ns.keep_ui, ns.tuner_wait), resources)
        if status in ("INTERRUPTED", "STOPPED"):
            print(f"the study is saved; continue it with the same command (--study {tune.study})", file=sys.stderr)
            return 130 if status == "INTERRUPTED" else 0
        return 1 if status == "ERROR" else 0

    try:
        run_tune(tune, base)
    except KeyboardInterrupt:
        print(f"ssnas: interrupted; the study is saved, continue it with the same command (--study {tune.study})",
              file=sys.stderr)
        return 130
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune", help="tune augmentation and loss settings with Optuna (optionally watched in the NNI web UI)",
        description="An Optuna study: each trial trains the supernet (--target supernet) or --arch (--target "
                    "genotype) for a few epochs and is scored by kNN top-1 on a held-out labelled split after "
                    "every epoch, so a pruner can stop it early. Writes OUT/STUDY/trial-NNNN/ (one run folder per "
                    "trial), best_config.toml, best_params.toml, study.json and PNG plots; the study itself lives "
                    "in --storage, and the same --study resumes it.")
    p.add_argument("--config", metavar="FILE", help="settings of the trained run: a search (or, for --target "
                                                    "genotype, retrain) TOML file or a run's config.json")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any key of the trained run's config, e.g. --set objective.queue_size=4096")
    study = p.add_argument_group("the study")
    add_flags(study, TuneConfig)
    study.add_argument("--show-space", action="store_true",
                       help="print the study's search space for --objective and exit")
    nni = add_launch_args(p, "the trials")
    nni.add_argument("--stop", action="store_true", help="stop the NNI experiment serving on --host/--port and exit")
    nni.add_argument("--trial-concurrency", type=int, default=1, metavar="N",
                     help="NNI trials running at once (NNI's trialConcurrency; default 1)")
    nni.add_argument("--trial-gpu-number", type=int, default=0, metavar="G",
                     help="GPUs per NNI trial (NNI's trialGpuNumber; NNI gives each trial its own; default 0)")
    nni.add_argument("--training-service", metavar="FILE",
                     help="where NNI runs the trials: a YAML file with the trainingService section of an NNI 3.0 "
                          "config (e.g. platform: remote and a machineList); default: this machine")
    nni.add_argument("--print-nni-config", action="store_true",
                     help="print the NNI experiment config (YAML, checked by NNI) that --nni would start, and exit")
    _add_trained_flags(p)
    p.set_defaults(func=run)
