"""Pretraining of a full-size network with any objective: the found cell (or a published one, or ResNet-18)
stacked into the evaluation network and trained the way SimCLR trains on CIFAR-10.

Same contract as the search: the objective owns its heads and says which views it needs; the loop makes
batched views, steps the optimiser and calls `after_step`. Defaults follow google-research/simclr's CIFAR-10
recipe (README: ResNet-18, batch 512, LARS, lr 1.0 per 256 images, weight decay 1e-6, temperature 0.5,
1000 epochs; run.py: 10 warm-up epochs, then cosine decay). A weighted kNN monitor (lightly's protocol)
tracks feature quality during training.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ssnas import registry
from ssnas.arch import build_encoder, is_backbone, load_genotype, resolved_network, size_words
from ssnas.config import check_tree, resume_safe_keys, to_dict
from ssnas.data.augment import AugmentConfig, ViewMaker
from ssnas.data.datasets import DataConfig, ImageSet, balanced_subset_indices, load_dataset, visible_labels
from ssnas.data.stream import FolderImages, batches, on_device
from ssnas.errors import UserError
from ssnas.kernels import fast_route, use_fast_kernels
from ssnas.nas.global_bn import use_global_batch_norm
from ssnas.nas.network import NetworkConfig, describe
from ssnas.runs import checkpoint
from ssnas.runs import threads as thread_settings
from ssnas.runs.console import Console, epoch_line, resume_words
from ssnas.runs.distributed import SINGLE, Ranks, hold_on_rank0
from ssnas.runs.log import RunLog
from ssnas.runs.folder import check_out
from ssnas.runs.guard import check_loss, check_modules
from ssnas.runs.settings import (RunConfig, epoch_seed, epoch_steps, epochs_done, interrupted, record_resume,
                                 record_world, resolve_device, resume_changes, resume_history, seed_everything)
from ssnas.training.continual import ContinualConfig
from ssnas.training.knn import KnnConfig, knn_top1
from ssnas.training.objective import Batch, BatchMaker, ObjectiveConfig
from ssnas.training.optim import make_optimizer, mixed_precision, set_lr, warmup_cosine

# Per-optimiser recipes for the settings left unset (None): base lr per 256 images and weight decay.
RECIPES = {
    "lars": {"lr": 1.0, "weight_decay": 1e-6},  # google-research/simclr README, CIFAR-10
    "sgd": {"lr": 0.12, "weight_decay": 5e-4},  # lightly's CIFAR-10 benchmark: 0.06 per 128 images, wd 5e-4
}


@dataclass
class RetrainOptimConfig:
    optimizer: str = field(default="lars", metadata={"help": "lars (SimCLR) or sgd (momentum SGD)",
                                                     "choices": tuple(RECIPES)})
    lr: float | None = field(default=None, metadata={
        "help": "base learning rate per 256 images, scaled by the global batch/256 (SimCLR); default: lars 1.0, "
                "sgd 0.12", "range": "(0, inf)", "resume_safe": True})
    weight_decay: float | None = field(default=None, metadata={"help": "weight decay; default: lars 1e-6, sgd 5e-4",
                                                               "range": "[0, 1]"})
    momentum: float = field(default=0.9, metadata={"help": "momentum (SimCLR: 0.9)", "range": "[0, 1)"})
    warmup_epochs: int | None = field(default=None, metadata={
        "help": "linear warm-up epochs before the cosine decay; unset = SimCLR's 10, but at most a tenth of --epochs",
        "range": "[0, 100000]"})
    epochs: int = field(default=1000, metadata={"help": "pretraining epochs (SimCLR CIFAR-10 recipe: 1000)",
                                                "range": "[1, 100000]"})
    batch_size: int = field(default=512, metadata={
        "help": "images per step; each gives the objective its views (SimCLR CIFAR-10: 512); under torchrun per "
                "process, so a step takes batch-size x processes images", "range": "[2, 65536]"})
    steps_per_epoch: int = field(default=0, metadata={
        "help": "cap on steps per epoch; 0 = one pass over the training set", "range": "[0, 1e9]"})
    amp: bool = field(default=True, metadata={"help": "float16 mixed precision on CUDA (ignored on CPU)"})

    def check(self) -> None:
        if self.warmup_epochs is not None and self.warmup_epochs > self.epochs:
            raise UserError(f"optim.warmup_epochs (--warmup-epochs) must be <= --epochs {self.epochs}, "
                            f"got {self.warmup_epochs}")

    def derive_warmup(self) -> list[str]:
        """Resolve an unset --warmup-epochs: SimCLR's 10 (google-research/simclr run.py), at most a tenth of the
        run, so a short run is not all warm-up; the note says what was derived (a value the user set is checked by
        `check`, strictly)."""
        if self.warmup_epochs is not None:
            return []
        self.warmup_epochs = min(10, self.epochs // 10)
        return [f"--warmup-epochs {self.warmup_epochs} ({self.epochs} epochs)"]

    def resolved(self, world: int = 1) -> tuple[float, float]:
        """(learning rate scaled by the global batch of `world` processes, weight decay)."""
        recipe = RECIPES[self.optimizer]
        lr = recipe["lr"] if self.lr is None else self.lr
        wd = recipe["weight_decay"] if self.weight_decay is None else self.weight_decay
        return lr * self.batch_size * world / 256, wd


@dataclass
class KnnMonitorConfig(KnnConfig):
    every: int = field(default=5, metadata={
        "flag": "--knn-every", "help": "kNN accuracy on the test set every N epochs and after the last; 0 = off "
                                       "(lightly evaluates every epoch; 5 keeps the cost near 5%%)",
        "range": "[0, 100000]", "resume_safe": True})
    test_subset: int = field(default=0, metadata={
        "help": "kNN monitor: only this many test images, class-balanced (0 = all)", "range": "[0, 1e9]"})


@dataclass
class RetrainConfig:
    arch: str = field(default="DARTS_V2", metadata={
        "help": "a genotype.json, a search run folder, a published genotype (DARTS_V1, DARTS_V2), a "
                "NAS-Bench-201 string ('|nor_conv_3x3~0|+...') or resnet18"})
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: RetrainOptimConfig = field(default_factory=RetrainOptimConfig)
    knn: KnnMonitorConfig = field(default_factory=KnnMonitorConfig)
    continual: ContinualConfig = field(default_factory=ContinualConfig)
    run: RunConfig = field(default_factory=lambda: RunConfig(out="runs/retrain"))


def validate(cfg: RetrainConfig) -> Any:
    """Cheap checks before any data is loaded; returns the architecture (a genotype or a backbone name).
    Network sizes left unset become the genotype's space's own (DARTS 20 cells / C = 36, NAS-Bench-201 5 cells
    per stage / C = 16): `cfg.network` is replaced by the resolved settings, so config.json, network.json and
    `--resume` all see the sizes actually built."""
    check_tree(cfg)  # every setting against its declared range
    objective = registry.objective(cfg.objective.name)
    objective.check(cfg.objective)  # its options and the shared knobs it reads
    resolve_device(cfg.run.device)
    cfg.optim.derive_warmup()  # an unset warm-up from the run's length (run_retrain derives it first, to print it)
    arch = cfg.arch.strip().lower() if is_backbone(cfg.arch) else load_genotype(cfg.arch)
    if is_backbone(arch):
        cfg.network.validate()
    else:
        cfg.network = resolved_network(cfg.network, arch)
    if cfg.network.auxiliary and objective.labels != "all":
        raise UserError("--auxiliary is a classifier and needs labels; it belongs to supervised training "
                        "(`ssnas eval RUN --protocol supervised`), not to contrastive pretraining")
    cfg.continual.validate()
    if is_backbone(arch) and cfg.network.drop_path:
        raise UserError("--drop-path applies to DARTS cells only; set it to 0 for --arch resnet18")
    return arch


class Pretrainer:
    """The encoder, the objective and the optimiser; `step` = views, loss, update, `after_step`. Under torchrun
    (`ranks`) every rank holds the same network and the gradients are averaged over the ranks before the update."""

    def __init__(self, cfg: RetrainConfig, arch: Any, channels: int, mean: list[float], std: list[float],
                 device: torch.device, num_classes: int = 0, ranks: Ranks = SINGLE):
        self.cfg = cfg
        self.device = device
        self.ranks = ranks
        # the encoder is built first after seeding, so `ssnas eval --random-init` rebuilds these exact weights
        seed_everything(cfg.run.seed)
        self.encoder = use_fast_kernels(build_encoder(arch, cfg.network, channels),
                                        fast_route(cfg.run.kernels, device.type))  # where measured faster
        self.objective = registry.objective(cfg.objective.name)(cfg.objective, self.encoder.feature_dim, num_classes)
        if cfg.run.sync_bn:  # before `attach`, so that momentum copies normalise globally too
            use_global_batch_norm(self.encoder, ranks)
            use_global_batch_norm(self.objective, ranks)
        self.encoder.to(device, memory_format=torch.channels_last)
        self.objective.to(device)
        self.objective.attach(self.encoder)
        ranks.broadcast_([*self.encoder.state_dict().values(), *self.objective.state_dict().values()])
        self.lr, weight_decay = cfg.optim.resolved(ranks.world)
        self.optimizer = make_optimizer(cfg.optim.optimizer, [self.encoder, self.objective], self.lr,
                                        cfg.optim.momentum, weight_decay)
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.autocast, self.scaler = mixed_precision(device, cfg.optim.amp)
        self.batches = BatchMaker(self.objective, ViewMaker(cfg.augment, mean, std), ranks)

    def make_batch(self, x: torch.Tensor, index: torch.Tensor, generator: torch.Generator,
                   labels: torch.Tensor | None) -> Batch:
        """The Batch of `x`, the uint8 images at `index` (`labels`: the whole set's, or None)."""
        return self.batches.from_pixels(x, index, generator, None if labels is None else labels[index])

    def step(self, batch: Batch, lr: float, progress: float,
             extra: Callable[[Batch], dict[str, torch.Tensor]] | None = None) -> dict[str, torch.Tensor]:
        """One weight step on the objective's loss, plus `extra(batch)["loss"]` when given (continual retraining's
        distillation terms); the extra's other entries are logged beside the objective's."""
        set_lr(self.optimizer, lr)
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            out = self.objective(self.encoder, batch)
            if extra is not None:
                more = extra(batch)
                out = {**out, **{k: v for k, v in more.items() if k != "loss"}, "loss": out["loss"] + more["loss"]}
        self.scaler.scale(out["loss"]).backward()
        # Under torchrun: the global batch's gradient. An all-reduce after the backward pass rather than DDP's
        # hooks: objectives call the encoder several times per step (CLSA's strong views, BYOL's target), keep
        # heads outside it and copy it (momentum encoders), which a DDP wrapper would have to see through.
        self.ranks.average_grads(self.params)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.objective.after_step(self.encoder, progress)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"encoder": self.encoder.state_dict(), "objective": self.objective.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.encoder.load_state_dict(state["encoder"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])


@dataclass
class RetrainResult:
    out: Path
    epochs_run: int
    finished: bool
    knn_top1: float | None = None  # the last kNN monitor reading, if any
    params: int = 0
    flops: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RunFiles:
    """What a pretraining run records about itself: its size, its genotype and the data's normalisation."""

    size: dict[str, int]
    arch_json: dict[str, Any] | None
    data_info: dict[str, Any]


def write_run_files(cfg: RetrainConfig, out: Path, arch: Any, trainer: Pretrainer, train: ImageSet,
                    mean: list[float], std: list[float], write: bool = True) -> RunFiles:
    """config.json, genotype.json (a genotype's) and network.json (sizes, parameters, FLOPs) into `out` (not with
    `write=False`: ranks other than 0). Returns the size and what the checkpoints carry for `ssnas eval` ("arch",
    "data")."""
    view_size = cfg.augment.size or train.image_size
    size = describe(trainer.encoder, (train.channels, view_size, view_size))
    arch_json = None if isinstance(arch, str) else arch.to_json()
    if write:
        out.mkdir(parents=True, exist_ok=True)
        checkpoint.write_json(out / "config.json", to_dict(cfg))
        if arch_json is not None:
            checkpoint.write_json(out / "genotype.json", arch_json)
        checkpoint.write_json(out / "network.json", {
            "arch": cfg.arch, "genotype": arch_json, **size, "feature_dim": trainer.encoder.feature_dim,
            "input_shape": [train.channels, view_size, view_size], "layers": cfg.network.layers,
            "init_channels": cfg.network.init_channels, "lr": trainer.lr, "weight_decay": cfg.optim.resolved()[1]})
    data_info = {"channels": train.channels, "image_size": train.image_size, "view_size": view_size,
                 "mean": mean, "std": std, "classes": train.classes, "dataset": cfg.data.dataset}
    return RunFiles(size, arch_json, data_info)


def prepare_out(cfg: RetrainConfig, out: Path) -> dict[str, Any] | None:
    """The checkpoint to resume from, if any (as search.prepare_out)."""
    check_out(out, cfg.run.resume, cfg.run.force)
    ckpt = out / "checkpoint.pt"
    if not cfg.run.resume or not ckpt.exists():
        return None
    state = checkpoint.load(ckpt, kind="retrain")
    if "encoder" not in state:
        raise UserError(f"{out} holds a search, not a retrain run; choose another --out")
    # a changed --lr needs nothing more: every step computes its rate from the config (warmup_cosine)
    state["changes"] = resume_changes(state["config"], to_dict(cfg), resume_safe_keys(RetrainConfig), out,
                                      defaults=to_dict(RetrainConfig()))
    return state


def guard(trainer: Pretrainer, epoch: int, step: int, out: Path) -> None:
    """Stop with one line when a weight or a BatchNorm statistic is NaN or infinite (ssnas.runs.guard)."""
    check_modules({"encoder": trainer.encoder, "objective": trainer.objective}, epoch, step, out, "retrain",
                  _rates(trainer.cfg))


def _rates(cfg: RetrainConfig) -> dict[str, float]:
    o = cfg.optim
    return {"--lr": RECIPES[o.optimizer]["lr"] if o.lr is None else o.lr}


def _knn_sets(cfg: RetrainConfig, train: ImageSet, test: ImageSet | None, console: Console
              ) -> tuple[ImageSet, ImageSet] | None:
    """(labelled bank, labelled queries) for the kNN monitor, or None when it is off or has no labels."""
    if cfg.knn.every == 0 or not train.has_labels:
        return None
    if test is None:
        try:
            test = load_dataset(cfg.data, "test", seed=cfg.run.seed)
        except UserError as e:
            console.warn(f"kNN monitor off: cannot load the test split ({e})")
            return None
    if not test.has_labels:
        console.warn("kNN monitor off: the test split has no labels")
        return None
    if cfg.knn.test_subset and cfg.knn.test_subset < len(test):
        test = test.subset(balanced_subset_indices(test.labels, cfg.knn.test_subset, cfg.run.seed))
    return train, test


def knn_monitor(trainer: Pretrainer, bank: ImageSet, queries: ImageSet) -> float:
    """Weighted-kNN top-1 of the current encoder: training images as the memory bank, test images as queries."""
    return knn_top1(trainer.encoder, bank, queries, trainer.batches.views.plain, trainer.device, trainer.cfg.knn)


def run_retrain(cfg: RetrainConfig, train: ImageSet | None = None, test: ImageSet | None = None, *,
                on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
                ranks: Ranks = SINGLE) -> RetrainResult:
    """Pretrain (or resume) a network; `train`/`test` may be given directly (tests), else they are loaded.
    `on_epoch(epoch, stats)` runs after each epoch's checkpoint, with the epoch counted from 1 (tuning reports and
    prunes there). Under torchrun, `ranks` (ssnas.runs.distributed.session): every step takes batch_size x world
    images, each rank its shard; only rank 0 holds the folder, writes and runs the kNN monitor."""
    derived = cfg.optim.derive_warmup()
    arch = validate(cfg)
    if cfg.continual.steps:
        raise UserError("--continual-steps runs the continual loop: `ssnas retrain` starts it, or call "
                        "ssnas.continual.run_continual; run_retrain trains on all the data at once")
    record_world(cfg, ranks.world)
    out = Path(cfg.run.out)
    with hold_on_rank0(ranks, out, cfg.run.resume, cfg.run.force):  # the output folder is this run's until it returns
        return _run_retrain(cfg, arch, out, prepare_out(cfg, out), train, test, on_epoch, derived, ranks)


def _run_retrain(cfg: RetrainConfig, arch: Any, out: Path, resume_state: dict[str, Any] | None,
                 train: ImageSet | None, test: ImageSet | None,
                 on_epoch: Callable[[int, dict[str, Any]], None] | None, derived: list[str],
                 ranks: Ranks) -> RetrainResult:
    console = Console(cfg.run.progress, cfg.run.quiet or not ranks.is_main)  # rank 0 alone prints
    threads = thread_settings.apply(cfg.run.threads)
    device = ranks.device(cfg.run.device)
    objective_cls = registry.objective(cfg.objective.name)
    if train is None:
        train = load_dataset(cfg.data, "train", seed=cfg.run.seed)
    labels = visible_labels(train, objective_cls.labels, cfg.objective.labels_fraction, cfg.run.seed)
    knn_sets = _knn_sets(cfg, train, test, console) if ranks.is_main else None  # the monitor is rank 0's
    mean, std = train.mean_std()
    o = cfg.optim
    steps = epoch_steps(len(train), cfg.run.global_batch_size, o.steps_per_epoch,
                        f"the training set (a step takes {o.batch_size} x {ranks.world} processes)"
                        if ranks.active else "the training set")
    derived += cfg.run.derive_log_every(steps)

    trainer = Pretrainer(cfg, arch, train.channels, mean, std, device,
                         num_classes=len(train.classes) if labels is not None else 0, ranks=ranks)
    start_epoch, history = 0, []
    if resume_state is not None:
        trainer.load_state_dict(resume_state)
        start_epoch, history = epochs_done(resume_state), resume_history(resume_state)
        if ranks.is_main:
            out.mkdir(parents=True, exist_ok=True)
            record_resume(out, start_epoch, resume_state["changes"])
    run = write_run_files(cfg, out, arch, trainer, train, mean, std, write=ranks.is_main)
    size, arch_json, data_info = run.size, run.arch_json, run.data_info
    view = data_info["view_size"]
    monitor = (f"every {cfg.knn.every} epochs and after the last, {len(knn_sets[1])} test images" if knn_sets
               else "off")
    batch = (f"batch {o.batch_size} x {ranks.world} processes = {cfg.run.global_batch_size}" if ranks.active
             else f"batch {o.batch_size}")
    console.summary(f"ssnas retrain: {cfg.arch} with the {cfg.objective.name} objective -> {out}", [
        ("data", f"{cfg.data.dataset}: {len(train)} images, {train.channels}x{train.image_size}x{train.image_size}, "
                 f"views {view}x{view}"),
        ("network", ("ResNet-18" if is_backbone(arch) else size_words(arch, cfg.network))
                    + f": {size['params'] / 1e6:.3f}M parameters, {size['flops'] / 2e6:.1f}M mult-adds per image"),
        ("steps", f"{steps} per epoch x {o.epochs} epochs, {batch}, {o.optimizer} lr {trainer.lr:.4g}, "
                  f"{o.warmup_epochs} warm-up epochs"),
        ("kNN monitor", monitor),
        ("device", f"{device}, threads {thread_settings.describe(threads)}" if device.type == "cpu" else str(device)),
        ("resume", resume_words(start_epoch, o.epochs)),
    ], derived)
    log = RunLog(out, resume_epoch=start_epoch, resume_step=start_epoch * steps, tensorboard=cfg.run.tensorboard,
                 write=ranks.is_main)
    images = on_device(train.images, device)  # in memory: moved once; streamed: decoded batch by batch
    labels_dev = None if labels is None else labels.to(device)
    knn_top1 = next((h["knn_top1"] for h in reversed(history) if "knn_top1" in h), None)
    last = o.epochs if not cfg.run.stop_after else min(o.epochs, start_epoch + cfg.run.stop_after)
    epoch = done = start_epoch
    try:
        for epoch in range(start_epoch, last):
            stats = run_epoch(trainer, images, labels_dev, epoch, steps, log, out, console=console)
            parts = [k for k in stats if k not in ENGINE_STATS]
            if knn_sets and ((epoch + 1) % cfg.knn.every == 0 or epoch + 1 == o.epochs):
                knn_top1 = knn_monitor(trainer, *knn_sets)
                stats["knn_top1"] = knn_top1
            history.append({"epoch": epoch + 1, **{k: v for k, v in stats.items() if k in ("loss", "knn_top1")}})
            log.log("epoch", (epoch + 1) * steps, epoch=epoch + 1, **stats)
            # "encoder" is what `ssnas eval` loads; "arch" and "data" let it rebuild the network and its inputs
            if ranks.is_main:
                checkpoint.save(out / "checkpoint.pt", {
                    "epochs_done": epoch + 1, "config": to_dict(cfg), **trainer.state_dict(), "history": history,
                    "arch": {"name": cfg.arch, "genotype": arch_json}, "data": data_info}, kind="retrain")
            done = epoch + 1
            console.line(epoch_line(epoch + 1, o.epochs, stats, parts))
            if on_epoch is not None:
                on_epoch(epoch + 1, dict(stats))
    except KeyboardInterrupt as e:
        raise interrupted(e, out, "ssnas retrain", epoch + 1, o.epochs, done) from None
    finally:
        log.close()
    return RetrainResult(out, last - start_epoch, last == o.epochs, knn_top1, size["params"], size["flops"], history)


# what run_epoch returns besides the loss parts
ENGINE_STATS = ("loss", "seconds", "images_per_s")


def run_epoch(trainer: Pretrainer, images: torch.Tensor | FolderImages, labels: torch.Tensor | None, epoch: int,
              steps: int, log: RunLog, out: Path, *, pool: torch.Tensor | None = None,
              schedule_epoch: int | None = None, extra: Callable[[Batch], dict[str, torch.Tensor]] | None = None,
              desc: str = "", console: Console | None = None) -> dict[str, float]:
    """One epoch of `steps` steps. `epoch` (from 0 here; its log rows count from 1, like every file) seeds its
    randomness; `schedule_epoch` (default `epoch`) is where it stands in the warm-up + cosine schedule of
    `optim.epochs` epochs, which continual retraining restarts at every step; `pool` restricts the batches to those
    dataset indices (default: all); `extra` adds terms to the loss (`Pretrainer.step`). Returns the epoch's mean
    loss and mean loss parts, its time and images/s."""
    cfg = trainer.cfg
    console = console or Console(cfg.run.progress, cfg.run.quiet or not trainer.ranks.is_main)
    o = cfg.optim
    b = o.batch_size * trainer.ranks.world  # the global batch: each rank makes its shard (Pretrainer.make_batch)
    schedule_epoch = epoch if schedule_epoch is None else schedule_epoch
    # every random draw of an epoch comes from seeds of (run, epoch): a resumed run repeats it exactly
    draw = torch.Generator().manual_seed(epoch_seed(cfg.run.seed, epoch, 0))
    order = torch.randperm(len(images), generator=draw) if pool is None else pool[torch.randperm(len(pool), generator=draw)]
    mine = trainer.ranks.rows(b)  # this rank's rows of every global batch: it reads only those
    index_lists = [order[step * b:(step + 1) * b][mine] for step in range(steps)]
    pixels = batches(images, index_lists, trainer.device)
    augment = torch.Generator(device=trainer.device).manual_seed(epoch_seed(cfg.run.seed, epoch, 1))
    # drop-path masks and anything else global: each rank its own stream (rank 0's is one process's)
    torch.manual_seed(epoch_seed(cfg.run.seed, epoch, 2 + 10 * trainer.ranks.rank))
    if hasattr(trainer.encoder, "drop_path_prob"):
        trainer.encoder.drop_path_prob = cfg.network.drop_path * schedule_epoch / o.epochs  # DARTS: linear ramp
    trainer.encoder.train()
    trainer.objective.train()
    total_steps, warmup_steps = o.epochs * steps, o.warmup_epochs * steps
    sums: dict[str, float] = {}
    seen, started = 0, time.perf_counter()
    every = cfg.run.log_interval(steps)
    for step in console.steps(steps, desc or f"epoch {epoch + 1}/{o.epochs}"):
        t0 = time.perf_counter()
        global_step = epoch * steps + step
        schedule_step = schedule_epoch * steps + step
        index = index_lists[step].to(trainer.device)
        batch = trainer.make_batch(next(pixels), index, augment, labels)
        lr = warmup_cosine(schedule_step, total_steps, warmup_steps, trainer.lr)
        # the global batch's loss, the same on every rank (so every rank stops together when it is not finite)
        parts = trainer.ranks.mean_values(trainer.step(batch, lr, (schedule_step + 1) / total_steps, extra))
        loss = check_loss(parts["loss"].detach(), epoch, step, out, "retrain", _rates(cfg))
        if cfg.run.check_every and (step + 1) % cfg.run.check_every == 0:
            guard(trainer, epoch, step, out)
        images_per_s = b / (time.perf_counter() - t0)
        row = {"loss": loss, **{k: float(v) for k, v in parts.items() if k != "loss"}}
        for k, v in row.items():
            sums[k] = sums.get(k, 0.0) + v
        seen += 1
        console.postfix(loss=f"{loss:.4f}", img_s=f"{images_per_s:.1f}")
        if step % every == 0 or step == steps - 1:
            log.log("step", global_step + 1, epoch=epoch + 1, **row, lr=lr, images_per_s=round(images_per_s, 2))
    guard(trainer, epoch, steps - 1, out)  # always before the checkpoint that follows an epoch
    seconds = time.perf_counter() - started
    means = {k: v / max(seen, 1) for k, v in sums.items()}
    return {**means, "seconds": round(seconds, 3), "images_per_s": round(seen * b / seconds, 2)}
