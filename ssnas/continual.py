"""Continual retraining: `ssnas retrain --continual-steps K` learns the training set in K steps, one after the other,
and measures after each step how well the features serve every class seen so far and how much was forgotten.

The maths and settings are in ssnas.training.continual (CCL, Lin et al. 2022). The methods, with the same schedule
and the same pretraining recipe per step (`optim.epochs` epochs, warm-up + cosine restarted at each step, one
optimiser throughout, as CCL's train.py):
- ccl: the step's images plus the exemplars kept so far; the objective's loss + similarity distillation on the
  exemplars + the extra-queue term; exemplars chosen by `--exemplar-selection` (CCL: min_var);
- replay: the step's images plus random exemplars, the objective's loss alone (CCL's SimpleReplay);
- finetune: the step's images alone, the objective's loss alone (plain sequential training, the baseline);
- joint: all K steps' images at once for `optim.epochs` epochs, the same number of weight steps as the sequential
  methods take in all (the upper bound), evaluated with the same per-task protocol.

After each step: weighted kNN (the retrain monitor's k and t) and a linear probe on frozen features, both over
every class seen so far (train images of those classes as the labelled set, their test images as queries), the
accuracy per step's task, the average accuracy and the forgetting; into metrics.jsonl (`"kind": "continual"`) and
continual.json. The checkpoint has the retrain layout, so `ssnas eval` and `ssnas export` read the final network.

Why not in the search: the search's product is a genotype, and its weights are thrown away; forgetting is a property
of trained weights. A stream of steps would also make DARTS's alphas follow whatever the latest step favours, which
is a different method (continual NAS), not a flag on this one. So `ssnas search` has no continual mode.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ssnas import registry
from ssnas.config import to_dict
from ssnas.data.datasets import ImageSet, balanced_subset_indices, load_dataset, visible_labels
from ssnas.errors import UserError
from ssnas.evaluate import LinearConfig, train_linear_probe
from ssnas.retrain import Pretrainer, RetrainConfig, run_epoch, validate as validate_retrain, write_run_files
from ssnas.runs import checkpoint
from ssnas.runs import threads as thread_settings
from ssnas.runs.folder import hold
from ssnas.runs.log import RunLog
from ssnas.runs.settings import epoch_steps, resolve_device
from ssnas.training.continual import (ContinualTerms, Step, continual_metrics, select_min_variance, select_random,
                                      split_steps)
from ssnas.training.knn import accuracy, extract_features, knn_predict

DEFINITIONS = ("a[k][j]: accuracy on the test images of step j's classes after step k, one classifier over every class "
               "seen so far; average_accuracy A_k = mean_j<=k a[k][j]; forgetting F_k = mean_j<k (max_l<k a[l][j] - "
               "a[k][j]), F_1 = 0 (Chaudhry et al., ECCV 2018, Sec. 4)")


@dataclass
class ContinualResult:
    out: Path
    record: dict[str, Any]  # what continual.json holds


def validate(cfg: RetrainConfig) -> Any:
    """The retrain checks, then the continual ones; returns the architecture."""
    c = cfg.continual
    if c.steps == 0:
        raise UserError("--continual-steps is 0: that is ordinary retraining (ssnas retrain without the flag)")
    arch = validate_retrain(cfg)
    objective = registry.objective(cfg.objective.name)
    if objective.labels == "all":
        raise UserError(f"continual retraining is for self-supervised objectives; {cfg.objective.name!r} reads every "
                        f"label")
    if c.method == "ccl" and not objective.has_embed():
        usable = [n for n in registry.available_objectives() if registry.objective(n).has_embed()]
        raise UserError(f"--continual-method {c.method} distils the objective's embeddings, and {cfg.objective.name!r} "
                        f"defines no embed(); use one of {', '.join(usable)}, or --continual-method replay/finetune")
    if cfg.run.resume or cfg.run.stop_after:
        raise UserError("continual runs cannot be resumed or stopped early; drop --resume/--stop-after and run the "
                        "steps in one go")
    return arch


def run_continual(cfg: RetrainConfig, train: ImageSet | None = None, test: ImageSet | None = None, *,
                  on_epoch: Callable[[int, dict[str, Any]], None] | None = None) -> ContinualResult:
    """Pretrain in `cfg.continual.steps` steps (or jointly, method joint), evaluating after each; `train`/`test`
    may be given directly (tests, and tuning, which scores on its validation split), else they are loaded.
    `on_epoch(epoch, stats)` runs after each epoch's checkpoint, epochs counted from 1 (tuning reports and prunes
    there)."""
    arch = validate(cfg)
    out = Path(cfg.run.out)
    with hold(out, force=cfg.run.force):  # the output folder is this run's until it returns
        return _run_continual(cfg, arch, out, train, test, on_epoch)


def _run_continual(cfg: RetrainConfig, arch: Any, out: Path, train: ImageSet | None, test: ImageSet | None,
                   on_epoch: Callable[[int, dict[str, Any]], None] | None) -> ContinualResult:
    c = cfg.continual
    thread_settings.apply(cfg.run.threads)
    device = resolve_device(cfg.run.device)
    train = train if train is not None else load_dataset(cfg.data, "train", seed=cfg.run.seed)
    test = test if test is not None else load_dataset(cfg.data, "test", seed=cfg.run.seed)
    if not (train.has_labels and test.has_labels):
        raise UserError("continual retraining splits the stream by class and scores every step by class: it needs a "
                        "labelled dataset with a test split (class subfolders)")
    if cfg.knn.test_subset and cfg.knn.test_subset < len(test):
        test = test.subset(balanced_subset_indices(test.labels, cfg.knn.test_subset, cfg.run.seed))
    num_classes = len(train.classes)
    # the stream's split reads the labels once, before training (as --subset does); the objective sees only what
    # its `labels` policy allows
    stream, order = split_steps(train.labels, num_classes, c.steps, c.split, cfg.run.seed)
    objective_labels = visible_labels(train, registry.objective(cfg.objective.name).labels,
                                      cfg.objective.labels_fraction, cfg.run.seed)
    mean, std = train.mean_std()
    trainer = Pretrainer(cfg, arch, train.channels, mean, std, device,
                         num_classes=num_classes if objective_labels is not None else 0)
    run = write_run_files(cfg, out, arch, trainer, train, mean, std)
    if train.streamed:
        raise UserError(f"continual retraining keeps its images in memory, and {cfg.data.dataset} is streamed from "
                        f"disk (--stream); pass --stream off if its decoded images fit")
    images = train.images.to(device)
    labels_dev = None if objective_labels is None else objective_labels.to(device)
    state = _Stream(cfg, trainer, images, labels_dev, train, test, stream, out, run, on_epoch)
    log = RunLog(out, tensorboard=cfg.run.tensorboard)
    try:
        phases = [Step(torch.cat([s.index for s in stream]).sort().values, tuple(range(num_classes)))] \
            if c.method == "joint" else stream
        for k, step in enumerate(phases):
            state.learn(k, step, log)
    finally:
        log.close()
    record = state.record(order)
    checkpoint.write_json(out / "continual.json", record)
    return ContinualResult(out, record)


class _Stream:
    """The state that lives across steps: exemplars, the CCL terms, the accuracy matrices."""

    def __init__(self, cfg: RetrainConfig, trainer: Pretrainer, images: torch.Tensor, labels: torch.Tensor | None,
                 train: ImageSet, test: ImageSet, stream: list[Step], out: Path, run: Any,
                 on_epoch: Callable[[int, dict[str, Any]], None] | None = None):
        self.cfg, self.trainer, self.images, self.labels, self.on_epoch = cfg, trainer, images, labels, on_epoch
        self.train, self.test, self.stream, self.out, self.run = train, test, stream, out, run
        self.exemplars = torch.zeros(0, dtype=torch.long)
        self.terms: ContinualTerms | None = None
        self.rows: list[dict[str, Any]] = []
        self.matrices: dict[str, list[list[float]]] = {"knn": [], "linear": []}
        self.epochs_done = 0

    def plain(self, ids: torch.Tensor) -> torch.Tensor:
        return self.trainer.batches.views.plain(self.images[ids.to(self.images.device)])

    @torch.no_grad()
    def embeddings(self, ids: torch.Tensor, augment: torch.Generator | None = None) -> torch.Tensor:
        """The objective's embeddings of dataset ids, in eval mode: plain images, or one augmented view each."""
        t = self.trainer
        t.encoder.eval()
        t.objective.eval()
        try:
            chunks = []
            for part in ids.split(256):
                x = self.plain(part) if augment is None else t.batches.views(self.images[part.to(self.images.device)], augment)
                chunks.append(t.objective.embed(t.encoder, x).float())
            return torch.cat(chunks)
        finally:
            t.encoder.train()
            t.objective.train()

    def learn(self, k: int, step: Step, log: RunLog) -> None:
        cfg, c, o, t = self.cfg, self.cfg.continual, self.cfg.optim, self.trainer
        started = time.perf_counter()
        pool = torch.cat([step.index, self.exemplars]).unique() if c.keeps_exemplars else step.index
        extra: Callable | None = None
        if c.method == "ccl" and k > 0:
            old_keys = self.embeddings(self.exemplars)
            if self.terms is None:
                self.terms = ContinualTerms(c, old_keys.shape[1], cfg.objective.temperature).to(t.device)
            self.terms.begin_step(t.encoder, t.objective, self.exemplars, old_keys)
            terms = self.terms
            extra = lambda batch: terms(t.encoder, t.objective, batch, self.plain)  # noqa: E731
        phases = c.steps if c.method != "joint" else 1
        steps = epoch_steps(len(pool), o.batch_size, o.steps_per_epoch, f"step {k + 1}")
        for e in range(o.epochs):
            epoch = self.epochs_done
            stats = run_epoch(t, self.images, self.labels, epoch, steps, log, self.out, pool=pool, schedule_epoch=e,
                              extra=extra, desc=f"step {k + 1}/{phases}, epoch {e + 1}/{o.epochs}")
            if extra is not None:
                self.terms.after_epoch(t.encoder, t.objective)
            log.log("epoch", (epoch + 1) * steps, epoch=epoch + 1, continual_step=k + 1, **stats)  # from 1
            self.epochs_done += 1
            self.save(self.epochs_done)
            if self.on_epoch is not None:
                self.on_epoch(self.epochs_done, dict(stats))
        new_exemplars = self.select(k, step) if c.keeps_exemplars else torch.zeros(0, dtype=torch.long)
        self.exemplars = torch.cat([self.exemplars, new_exemplars])
        scores = self.evaluate(k)
        row = {"step": k + 1, "classes": [self.train.classes[i] for i in step.classes], "new_images": len(step.index),
               "train_images": len(pool), "exemplars_kept": len(self.exemplars),
               "seconds": round(time.perf_counter() - started, 2), **scores}
        self.rows.append(row)
        flat = {f"{p}_{key}": v for p in ("knn", "linear") for key, v in scores[p].items() if not isinstance(v, list)}
        log.log("continual", k + 1, epoch=self.epochs_done, continual_step=k + 1, **flat)
        print(f"step {k + 1}: kNN {100 * scores['knn']['accuracy']:.2f}% (average {100 * scores['knn']['average_accuracy']:.2f}%, "
              f"forgetting {100 * scores['knn']['forgetting']:.2f}), linear {100 * scores['linear']['accuracy']:.2f}%")

    def select(self, k: int, step: Step) -> torch.Tensor:
        """This step's exemplars (dataset ids), chosen among its own images."""
        c, seed = self.cfg.continual, self.cfg.run.seed + 1000 * (k + 1)
        ids = step.index
        if c.selection_used == "random":
            return ids[select_random(self.train.labels[ids], c.exemplars, seed)]
        clusters = len(step.classes) if c.split == "class" else len(self.train.classes)
        plain = self.embeddings(ids)
        g = torch.Generator(device=self.trainer.device).manual_seed(seed)
        views = torch.stack([self.embeddings(ids, g) for _ in range(c.selection_views)], dim=1)
        return ids[select_min_variance(plain.cpu(), views.cpu(), clusters, c.exemplars, seed)]

    def seen(self, k: int) -> list[int]:
        if self.cfg.continual.method == "joint":
            return sorted({cl for s in self.stream for cl in s.classes})
        return sorted({cl for s in self.stream[:k + 1] for cl in s.classes})

    def evaluate(self, k: int) -> dict[str, Any]:
        """kNN and linear accuracy over the classes seen so far, per task, with A_k and F_k."""
        cfg, t = self.cfg, self.trainer
        seen = self.seen(k)
        remap = torch.full((len(self.train.classes),), -1, dtype=torch.long)
        remap[torch.tensor(seen)] = torch.arange(len(seen))
        bank_rows = torch.nonzero(remap[self.train.labels] >= 0).flatten()
        query_rows = torch.nonzero(remap[self.test.labels] >= 0).flatten()
        plain = t.batches.views.plain
        bank_f = extract_features(t.encoder, self.train.images[bank_rows], plain, t.device)
        query_f = extract_features(t.encoder, self.test.images[query_rows], plain, t.device)
        bank_y = remap[self.train.labels[bank_rows]]
        query_y = remap[self.test.labels[query_rows]]
        preds = {"knn": knn_predict(bank_f, bank_y.to(t.device), query_f, len(seen), cfg.knn.k, cfg.knn.temperature).cpu()}
        classify = train_linear_probe(bank_f, bank_y, len(seen), LinearConfig(epochs=cfg.continual.linear_epochs),
                                      cfg.run.seed)
        preds["linear"] = classify(query_f).argmax(1).cpu()
        tasks = self.stream if cfg.continual.method == "joint" else self.stream[:k + 1]
        query_labels = self.test.labels[query_rows]
        out: dict[str, Any] = {}
        for name, p in preds.items():
            per_task = [accuracy(p[torch.isin(query_labels, torch.tensor(s.classes))],
                                 query_y[torch.isin(query_labels, torch.tensor(s.classes))]) for s in tasks]
            self.matrices[name].append(per_task)
            if cfg.continual.method == "joint":
                summary = {"average_accuracy": sum(per_task) / len(per_task), "forgetting": 0.0}
            else:
                metrics = continual_metrics(self.matrices[name])
                summary = {key: values[-1] for key, values in metrics.items()}
            out[name] = {"accuracy": accuracy(p, query_y), "per_task": per_task, **summary}
        return out

    def save(self, done: int) -> None:
        """The retrain checkpoint layout (what `ssnas eval` and `ssnas export` load), plus the stream's state."""
        checkpoint.save(self.out / "checkpoint.pt", {
            "epochs_done": done, "config": to_dict(self.cfg), **self.trainer.state_dict(), "history": [],
            "arch": {"name": self.cfg.arch, "genotype": self.run.arch_json}, "data": self.run.data_info,
            "continual": {"exemplars": self.exemplars.tolist(), "rows": self.rows,
                          "terms": None if self.terms is None else self.terms.state_dict()}}, kind="continual")

    def record(self, order: list[int]) -> dict[str, Any]:
        c = self.cfg.continual
        out: dict[str, Any] = {
            "method": c.method, "split": c.split, "steps": c.steps, "epochs_per_step": self.cfg.optim.epochs,
            "objective": self.cfg.objective.name, "arch": self.cfg.arch, "dataset": self.cfg.data.dataset,
            "class_order": [self.train.classes[i] for i in order],
            "exemplars_per_class": c.exemplars if c.keeps_exemplars else 0,
            "selection": c.selection_used if c.keeps_exemplars else None, "definitions": DEFINITIONS,
            "per_step": self.rows}
        for name in ("knn", "linear"):
            out[name] = {"accuracy_matrix": self.matrices[name],
                         "average_accuracy": [r[name]["average_accuracy"] for r in self.rows],
                         "forgetting": [r[name]["forgetting"] for r in self.rows],
                         "final_accuracy": self.rows[-1][name]["accuracy"]}
        out["config"] = to_dict(self.cfg)
        return out
