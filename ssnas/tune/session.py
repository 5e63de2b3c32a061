"""`ssnas tune`: an Optuna study over the augmentation and loss knobs, each trial a short contrastive training.

A trial trains either the supernet (the bilevel search of `ssnas.search`) or a given genotype (the pretraining of
`ssnas.retrain`) for a few epochs. After every epoch the weights just checkpointed are scored by weighted-kNN top-1
on a labelled validation split that the trial never trains on; the score is reported to Optuna (and to NNI inside
an NNI trial), so a pruner can stop a bad trial early. The study lives in an RDB storage (SQLite by default):
running `ssnas tune` again with the same --study and --storage resumes it.

Several workers (processes or machines) started with the same --study and --storage share the study: between them
they run exactly --trials trials (ssnas.tune.study: lineages, budget). A worker's running trial beats every
--heartbeat seconds; the trial of a worker that died is failed after two silent beats by another worker and run
again with its parameters.
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ssnas.arch import build_encoder, build_supernet
from ssnas.continual import run_continual, validate as validate_continual
from ssnas.config import Tunable, apply_overrides, check_tree, resume_safe_keys, to_dict
from ssnas.data.augment import ViewMaker
from ssnas.data.datasets import ImageSet, balanced_subset_indices, load_dataset
from ssnas.errors import UserError
from ssnas.files import STALE_TEMP_S, remove_stale_temps
from ssnas.retrain import RetrainConfig, run_retrain, validate as validate_retrain
from ssnas.runs import checkpoint
from ssnas.runs import threads as thread_settings
from ssnas.runs.settings import config_differences, resolve_device, with_defaults
from ssnas.search import SearchConfig, run_search, validate as validate_search
from ssnas.training.knn import KnnConfig, knn_top1
from ssnas.tune.report import write_outputs
from ssnas.tune.space import is_option, space_for, suggest
from ssnas.tune.study import (GRACE_FACTOR, JOURNAL, enqueue_rerun, fail_silent_trials, open_study, progress, recover,
                              surplus)

TARGETS = ("supernet", "genotype")
PRUNERS = ("median", "hyperband", "threshold", "none")
# A trial is a short run: these replace the classes' defaults (a --config file and flags still override them).
TRIAL_DEFAULTS = {
    "supernet": {"optim.epochs": 10, "run.out": "runs/tune"},
    "genotype": {"optim.epochs": 10, "run.out": "runs/tune"},
}
# --val-size left unset: this share of the labelled training images, at most VAL_SIZE_MAX, so a big dataset keeps
# nearly all its images for training (1,000 queries measure a kNN top-1 to about +-3 points, 95%, binomial)
VAL_SHARE, VAL_SIZE_MAX = 0.2, 1000
# A session gives up after this many failed trials in a row (a setting, not bad luck, is then the likely cause).
MAX_FAILURES_IN_A_ROW = 3
# A study's name is a folder inside --out: no path separators, no '..', nothing hidden.
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass
class TuneConfig:
    study: str = field(default="ssnas", metadata={"help": "study name; the same --study and --storage resume it"})
    storage: str = field(default="", metadata={
        "help": "Optuna storage: an SQLAlchemy RDB URL (sqlite:///runs/tune.db; postgresql://user:pw@host/db for "
                "workers on several machines) or journal:FILE (Optuna's journal file, on a shared filesystem, for "
                "clusters without a database); empty = sqlite:///OUT/tune.db"})
    heartbeat: int = field(default=60, metadata={
        "help": "seconds between a running trial's heartbeats; a trial silent for two beats (its worker died) is "
                "failed by another worker and run again; 0 = off", "range": "[0, 86400]"})
    trials: int = field(default=20, metadata={
        "help": "finished trials (complete, pruned or failed) the study should hold; a resumed study runs the rest",
        "range": "[1, 100000]"})
    target: str = field(default="supernet", metadata={
        "help": "what a trial trains: supernet (the bilevel search) or genotype (pretraining of --arch)",
        "choices": TARGETS})
    pruner: str = field(default="median", metadata={
        "help": "stops bad trials early: median, hyperband, threshold (below --prune-below) or none",
        "choices": PRUNERS})
    prune_below: float = field(default=0.0, metadata={
        "help": "threshold pruner: prune a trial whose kNN top-1 (0..1) falls below this", "range": "[0, 1]"})
    val_size: int | None = field(default=None, metadata={
        "help": "labelled training images held out of every trial as kNN queries (class-balanced); unset = 20%% of "
                "the training images, at most 1000", "range": "[1, 1e9]"})
    bank_size: int = field(default=5000, metadata={
        "help": "labelled images, from those a trial trains on, that form the kNN memory bank (0 = all)",
        "range": "[0, 1e9]"})
    knn: KnnConfig = field(default_factory=KnnConfig)
    plots: bool = field(default=True, metadata={
        "help": "save Optuna's plots (history, intermediate values, parallel coordinates, importance) as PNG"})

    def check(self) -> None:
        if self.pruner == "threshold" and self.prune_below <= 0:
            raise UserError("--pruner threshold needs --prune-below, a kNN top-1 in (0, 1] to prune below")
        if not STUDY_NAME.fullmatch(self.study):
            raise UserError(f"study (--study) must be a plain name of letters, digits, '.', '_' and '-' that starts "
                            f"with a letter or digit (it names a folder inside --out), got {self.study!r}")


class TrialFailed(Exception):
    """A trial that failed on its own settings (e.g. a diverging loss): the study records it and goes on."""


class TrialSurplus(Exception):
    """A trial another worker's trials leave no room for (ssnas.tune.study.surplus): given up before it starts."""


def grace_s(tune: TuneConfig) -> float:
    """How long a running trial may stay silent before another worker fails and re-runs it (0 = never)."""
    return float(GRACE_FACTOR * tune.heartbeat)


class _Heartbeat:
    """The journal storage has no heartbeat of Optuna's: the trial's `ssnas_alive` attribute, every `interval`
    seconds, from a thread (`recover` in other workers reads it)."""

    def __init__(self, trial: Any, interval: float):
        self.trial, self.interval = trial, interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopped.is_set():
            self.trial.set_user_attr("ssnas_alive", time.time())
            self.stopped.wait(self.interval)

    def __enter__(self) -> "_Heartbeat":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopped.set()
        self.thread.join(timeout=30)


class _NoTraceback(logging.Filter):
    """Optuna logs a failed trial with its traceback; for a trial that failed on its settings (the message says
    why) or was interrupted by Ctrl-C, one line is enough."""
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], (TrialFailed, TrialSurplus, KeyboardInterrupt)):
            record.exc_info, record.exc_text = None, None
        return True


# ---- configuration -----------------------------------------------------------------------------------------

def config_class(target: str) -> type:
    if target == "genotype":
        return RetrainConfig

    return SearchConfig


def validate(tune: TuneConfig, base: Any) -> tuple[Tunable, ...]:
    """Cheap checks before any data is loaded; returns the study's parameters for this objective."""
    check_tree(tune)
    params = space_for(base.objective.name, continual=is_continual(tune.target, base))
    _validate_trained(tune.target, base)
    for end in ("low", "high"):  # both ends of every range must give a valid run
        probe = copy.deepcopy(base)
        apply_overrides(probe, {p.key: p.end(end) for p in params})
        _validate_trained(tune.target, probe)
    return params


def is_continual(target: str, cfg: Any) -> bool:
    """A study whose trials are continual retrainings (--target genotype with --continual-steps)."""
    return target == "genotype" and cfg.continual.steps > 0


def _validate_trained(target: str, cfg: Any) -> Any:
    if is_continual(target, cfg):
        return validate_continual(cfg)
    if target == "genotype":
        return validate_retrain(cfg)

    return validate_search(cfg)


def study_dir(tune: TuneConfig, base: Any) -> Path:
    """<out>/<study>: trial folders, the best config, the plots."""
    return Path(base.run.out).absolute() / tune.study


def storage_url(tune: TuneConfig, base: Any) -> str:
    """The storage URL with a SQLite path made absolute (NNI's processes do not share our working directory)."""
    url = tune.storage or f"sqlite:///{Path(base.run.out) / 'tune.db'}"
    for prefix in ("sqlite:///", JOURNAL):
        if url.startswith(prefix) and url[len(prefix):] not in ("", ":memory:"):
            path = Path(url[len(prefix):]).absolute()
            path.parent.mkdir(parents=True, exist_ok=True)
            url = prefix + str(path)
    return url


# ---- the study ----------------------------------------------------------------------------------------------

def make_pruner(tune: TuneConfig, epochs: int) -> Any:
    import optuna

    if tune.pruner == "median":
        return optuna.pruners.MedianPruner()  # Optuna's defaults: 5 startup trials, no warm-up steps
    if tune.pruner == "hyperband":  # one resource unit = one epoch (steps are reported as epochs trained)
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    if tune.pruner == "threshold":
        return optuna.pruners.ThresholdPruner(lower=tune.prune_below)
    return optuna.pruners.NopPruner()


def resumable(target: str) -> frozenset[str]:
    """Settings that may change when a study is resumed: the resume-safe keys that say how a run runs, not the
    learning rates (a resumed run may change those, but they change what a trial computes)."""
    return frozenset(k for k in resume_safe_keys(config_class(target)) if not k.startswith("optim.")) | {"run.resume"}


def study_spec(tune: TuneConfig, base: Any, params: tuple[Tunable, ...]) -> dict[str, Any]:
    """What a trial's score depends on, stored with the study so that a resume with other settings is refused.
    The tuned keys are left out: every trial sets them itself."""
    config = to_dict(base)
    for p in params:
        section, name = p.key.split(".", 1)
        (config[section].get("options", {}) if is_option(p) else config[section]).pop(name, None)
    return {"target": tune.target, "config": config,
            "score": {"val_size": tune.val_size, "bank_size": tune.bank_size, "knn": to_dict(tune.knn)}}


def check_spec(study: Any, spec: dict[str, Any], url: str) -> None:
    saved = study.user_attrs.get("ssnas_spec")
    if saved is None:
        if study.get_trials(deepcopy=False):
            raise UserError(f"study {study.study_name!r} in {url} was not made by ssnas tune; choose another --study")
        study.set_user_attr("ssnas_spec", spec)
        return
    diffs = [] if saved["target"] == spec["target"] else ["target"]
    # settings added since the study began ran with their defaults
    older = with_defaults(saved["config"], to_dict(config_class(spec["target"])()), spec["config"])
    diffs += [k for k in config_differences(older, spec["config"]) if k not in resumable(spec["target"])]
    diffs += [f"tune.{k}" for k in config_differences(saved["score"], spec["score"])]
    if diffs:
        raise UserError(f"cannot resume study {study.study_name!r}: its trials ran with other settings in "
                        f"{', '.join(diffs)}; rerun with the original settings or choose another --study")


def prepare_study(tune: TuneConfig, base: Any, params: tuple[Tunable, ...]) -> tuple[Any, str, Path]:
    """Open (or create) the study, refuse a resume with other settings, re-enqueue crashed trials."""
    url, root = storage_url(tune, base), study_dir(tune, base)
    epochs = base.optim.epochs
    study = open_study(url, tune.study, make_pruner(tune, epochs), base.run.seed, heartbeat=tune.heartbeat)
    if not study.get_trials(deepcopy=False) and any(root.glob("trial-*")):
        raise UserError(f"{root} holds trial folders of another study named {tune.study!r}; choose another "
                        f"--out or --study, or delete {root}")
    check_spec(study, study_spec(tune, base, params), url)
    again = recover(study, grace_s(tune))
    remove_stale_temps(root, STALE_TEMP_S)  # of killed writes of the best config; other workers may be writing
    if again:
        print(f"ssnas: unfinished trial(s) {', '.join(map(str, again))} run again with the same parameters")
    return study, url, root


# ---- data and scoring ---------------------------------------------------------------------------------------

def derive_val_size(val_size: int | None, images: int) -> tuple[int, str]:
    """The validation split's size: --val-size as given, or, unset, VAL_SHARE of the images (at most
    VAL_SIZE_MAX, at least 1), with a note saying so. The study records the setting (unset), not the number: the
    same data gives the same number."""
    if val_size is not None:
        return val_size, ""
    derived = max(1, min(VAL_SIZE_MAX, int(VAL_SHARE * images)))
    return derived, f"--val-size {derived} ({100 * VAL_SHARE:.0f}% of {images} images, at most {VAL_SIZE_MAX})"


@dataclass
class TuneData:
    """The training images of every trial, and the labelled images that score it (never trained on)."""
    train: ImageSet
    val: ImageSet
    bank: ImageSet

    @classmethod
    def load(cls, tune: TuneConfig, base: Any) -> TuneData:
        full = load_dataset(base.data, "train", seed=base.run.seed)
        if not full.has_labels:
            raise UserError(f"ssnas tune scores trials by kNN accuracy, which needs labelled training images; "
                            f"dataset {base.data.dataset!r} has none (use class subfolders)")
        val_size, note = derive_val_size(tune.val_size, len(full))
        if note:
            print(f"ssnas tune: derived (flags you did not set): {note}")
        return cls.split(full, val_size, tune.bank_size, base.run.seed)

    @classmethod
    def split(cls, full: ImageSet, val_size: int, bank_size: int, seed: int) -> TuneData:
        """A class-balanced validation split held out of training; the bank is drawn from the training part."""
        if val_size >= len(full):
            raise UserError(f"--val-size {val_size} leaves no training images of {len(full)}; lower it or "
                            f"raise --subset")
        val_index = balanced_subset_indices(full.labels, val_size, seed)
        keep = torch.ones(len(full), dtype=torch.bool)
        keep[val_index] = False
        train = full.subset(keep)
        bank = train
        if bank_size and bank_size < len(train):
            bank = train.subset(balanced_subset_indices(train.labels, bank_size, seed))
        return cls(train, full.subset(val_index), bank)

    def save(self, path: Path) -> None:
        """One file for NNI's trial processes: decoding a dataset once per study, not once per trial."""
        parts = {k: {"images": s.images, "labels": s.labels} for k, s in vars(self).items()}
        checkpoint.save(path, {"name": self.train.name, "classes": self.train.classes, **parts}, kind="tune-data")

    @classmethod
    def from_file(cls, path: Path) -> TuneData:
        state = checkpoint.load(path, kind="tune-data")
        return cls(**{k: ImageSet(state[k]["images"], state[k]["labels"], state["classes"], state["name"])
                      for k in ("train", "val", "bank")})


class KnnScorer:
    """Weighted-kNN top-1 of a run's latest checkpoint: bank features vs. validation features."""
    def __init__(self, target: str, cfg: Any, data: TuneData, knn: KnnConfig):
        self.target, self.data, self.knn = target, data, knn
        self.device = resolve_device(cfg.run.device)
        mean, std = data.train.mean_std()  # the statistics the trial's own views are normalised with
        self.plain = ViewMaker(cfg.augment, mean, std).plain
        with torch.random.fork_rng(devices=[]):  # building a network must not move the trial's random stream
            if target == "genotype":
                self.net = build_encoder(_validate_trained(target, copy.deepcopy(cfg)), cfg.network, data.train.channels)
            else:
                self.net = build_supernet(cfg.space, cfg.supernet, data.train.channels)
        self.net.to(self.device, memory_format=torch.channels_last)  # as trained: NHWC runs faster on CPU

    def __call__(self, ckpt: Path) -> float:
        state = checkpoint.load(ckpt)
        self.net.load_state_dict(state["encoder"] if self.target == "genotype" else state["searcher"]["supernet"])
        return knn_top1(self.net, self.data.bank, self.data.val, self.plain, self.device, self.knn)


# ---- one trial ----------------------------------------------------------------------------------------------

def trial_config(base: Any, target: str, params: dict[str, Any], out: Path) -> Any:
    cfg = apply_overrides(copy.deepcopy(base), params)
    cfg.run.out, cfg.run.resume, cfg.run.stop_after = str(out), False, 0
    if target == "genotype":
        cfg.knn.every = 0  # the trial is scored on the validation split here, never on the test set
    return cfg


class TrialRunner:
    """Runs trials of one study: the data is loaded once, each trial trains in <study dir>/trial-NNNN."""
    def __init__(self, tune: TuneConfig, base: Any, params: tuple[Tunable, ...], root: Path,
                 data: TuneData | None = None, on_report: Callable[[dict[str, Any]], None] | None = None):
        """`on_report(numbers)` sees every epoch's report: the score under "default", the epoch (from 1) and the
        run's statistics (NNI's trial process forwards the score to the web UI and prints the rest)."""
        self.tune, self.base, self.params, self.root = tune, base, params, root
        self.on_report = on_report
        self.data = data or TuneData.load(tune, base)
        self.last: dict[str, Any] = {}  # the running trial's latest report (NNI's final result reuses it)

    def __call__(self, trial: Any) -> float:
        if surplus(trial.study, trial.number, self.tune.trials):  # another worker took its place meanwhile
            trial.set_user_attr("ssnas_surplus", True)
            raise TrialSurplus(f"trial {trial.number}: the study's {self.tune.trials} trials are taken")
        out = self.root / f"trial-{trial.number:04d}"
        trial.set_user_attr("ssnas_host", socket.gethostname())
        trial.set_user_attr("ssnas_pid", os.getpid())
        trial.set_user_attr("out", str(out))
        self.last = {}
        beat = self.tune.heartbeat if self.tune.storage.startswith(JOURNAL) else 0
        try:
            if (out / "checkpoint.pt").exists():
                raise UserError(f"{out} already holds a run, but trial {trial.number} is new; delete that folder")
            cfg = trial_config(self.base, self.tune.target, suggest(trial, self.params), out)
            scorer = KnnScorer(self.tune.target, cfg, self.data, self.tune.knn)
            with _Heartbeat(trial, beat) if beat else contextlib.nullcontext():
                result = self._train(cfg, lambda epoch, stats: self._report(trial, scorer, out, epoch, stats))
        except UserError as e:
            trial.set_user_attr("error", str(e))
            raise TrialFailed(str(e)) from None
        except KeyboardInterrupt:
            trial.set_user_attr("ssnas_interrupted", True)
            enqueue_rerun(trial.study, trial)  # runs again, in the next worker that asks (this one or another)
            raise
        if result is not None:
            trial.set_user_attr("genotype", result)
            self.last["genotype"] = json.dumps(result)
        return self.last["default"]

    def _train(self, cfg: Any, on_epoch: Any) -> dict[str, Any] | None:
        """Train with the trial's config; returns the genotype a supernet trial found."""
        if is_continual(self.tune.target, cfg):  # each step is scored on the validation split too
            run_continual(cfg, self.data.train, self.data.val, on_epoch=on_epoch)
            return None
        if self.tune.target == "genotype":
            run_retrain(cfg, self.data.train, on_epoch=on_epoch)
            return None

        return run_search(cfg, self.data.train, on_epoch=on_epoch).genotype.to_json()

    def _report(self, trial: Any, scorer: KnnScorer, out: Path, epoch: int, stats: dict[str, Any]) -> None:
        """After epoch `epoch` (from 1): score the checkpoint, report it, prune if the pruner says so."""
        import optuna

        score = scorer(out / "checkpoint.pt")
        numbers = {k: v for k, v in stats.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.last = {"default": score, "epoch": epoch, **numbers}
        with (out / "knn.jsonl").open("a") as f:
            f.write(json.dumps({"epoch": epoch, "knn_top1": score, "loss": stats.get("loss")}) + "\n")
        trial.report(score, epoch)  # step = epochs trained: Hyperband's resource unit
        if self.on_report is not None:
            self.on_report(self.last)
        if trial.should_prune():
            self.last["pruned"] = 1
            raise optuna.TrialPruned(f"epoch {epoch}: kNN top-1 {score:.4f}")


# ---- the session --------------------------------------------------------------------------------------------

@dataclass
class TuneResult:
    study: Any
    root: Path
    ran: int  # trials run by this session
    best_config: Path | None = None
    best_params: Path | None = None
    plots: list[Path] = field(default_factory=list)


def run_tune(tune: TuneConfig, base: Any, data: TuneData | None = None) -> TuneResult:
    """Run (or resume, or join) the study until it holds `tune.trials` finished trials; write the best config and
    plots. Other workers may run trials of the same study meanwhile (see the module docstring)."""
    from optuna.trial import TrialState

    params = validate(tune, base)
    thread_settings.apply(base.run.threads)  # before the data loads; each trial's run applies it again
    study, url, root = prepare_study(tune, base, params)
    state = progress(study, tune.trials)
    ran = 0
    if state.finished < tune.trials:
        print(f"ssnas tune: study {tune.study!r} in {url}: {state.finished} of {tune.trials} trials finished, "
              f"{len(state.running)} running elsewhere; trial folders in {root}")
        runner = TrialRunner(tune, base, params, root, data)
        failures: list[str] = []

        def count_failures(study: Any, trial: Any) -> None:
            if trial.user_attrs.get("ssnas_surplus"):
                return
            if trial.state == TrialState.FAIL:
                failures.append(trial.user_attrs.get("error", "an exception (see the log above)"))
            else:
                failures.clear()

        before, told = len(study.get_trials(deepcopy=False)), False
        optuna_log, quiet = logging.getLogger("optuna.study._optimize"), _NoTraceback()
        optuna_log.addFilter(quiet)
        try:
            while len(failures) < MAX_FAILURES_IN_A_ROW:
                state = progress(study, tune.trials)
                if state.finished >= tune.trials:
                    break
                if not state.open and not state.waiting:
                    # the rest runs in other workers: wait until they finish, or fall silent and are enqueued again
                    if not told:
                        print(f"ssnas tune: waiting for trial(s) {', '.join(map(str, state.running))}, running in "
                              f"other workers", flush=True)
                        told = True
                    fail_silent_trials(study)  # an RDB's heartbeat: stale trials failed and re-enqueued
                    recover(study, grace_s(tune))  # the journal's, and dead processes on this machine
                    time.sleep(max(1.0, min(5.0, tune.heartbeat / 2)))
                    continue
                study.optimize(runner, n_trials=1, catch=(TrialFailed, TrialSurplus), callbacks=[count_failures],
                               gc_after_trial=True)
        finally:
            optuna_log.removeFilter(quiet)
            ran = len(study.get_trials(deepcopy=False)) - before
        if len(failures) >= MAX_FAILURES_IN_A_ROW:
            raise UserError(f"{len(failures)} trials in a row failed, the last with: {failures[-1]}")
    result = TuneResult(study, root, ran)
    write_outputs(result, tune, base, url)
    return result
