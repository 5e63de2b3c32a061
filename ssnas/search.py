"""The bilevel DARTS search loop, driven by any objective (Liu et al. 2019, Sec. 2.3, Algorithm 1).

Weights learn on one half of the (unlabelled) training set, architecture parameters on the other. Each
step: one architecture step on an `arch` batch, then one weight step on a `weight` batch.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ssnas import arch, registry
from ssnas.config import check_tree, from_dict, resume_safe_keys, to_dict
from ssnas.data.augment import AugmentConfig, ViewMaker
from ssnas.data.datasets import DataConfig, ImageSet, bilevel_split, load_dataset, visible_labels
from ssnas.data.stream import FolderImages, batches, on_device
from ssnas.errors import UserError
from ssnas.export.graph import log_epoch_pictures  # matplotlib only when pictures are drawn
from ssnas.kernels import fast_route, use_fast_kernels
from ssnas.nas.architect import unrolled_arch_grads
from ssnas.nas.diagnostics import changed_edges, derivation_margins, search_diagnostics, undecided_warning
from ssnas.nas.early_stop import settled, unchanged_epochs
from ssnas.nas.global_bn import use_global_batch_norm
from ssnas.nas.space import SpaceConfig
from ssnas.runs import checkpoint
from ssnas.runs import threads as thread_settings
from ssnas.runs.console import Console, epoch_line, resume_words
from ssnas.runs.distributed import SINGLE, Ranks, hold_on_rank0
from ssnas.runs.ground_truth import BenchmarkTable, epoch_truth
from ssnas.runs.folder import check_out
from ssnas.runs.guard import check_loss, check_modules
from ssnas.runs.log import RunLog
from ssnas.runs.settings import (RunConfig, epoch_seed, epoch_steps, epochs_done, interrupted, record_resume,
                                 record_world, resolve_device, resume_changes, resume_history, seed_everything)
from ssnas.strategies.base import StrategyConfig
from ssnas.training.objective import Batch, BatchMaker, ObjectiveConfig
from ssnas.training.optim import autocast_bf16, uses_bf16


@dataclass
class SearchOptimConfig:
    """Defaults: DARTS's CIFAR-10 search (App. A.1.1, cnn/train_search.py)."""
    epochs: int = field(default=50, metadata={"help": "search epochs (DARTS: 50)", "range": "[1, 100000]"})
    batch_size: int = field(default=64, metadata={
        "help": "images per step, for each half (DARTS: 64); under torchrun per process, so a step takes "
                "batch-size x processes images", "range": "[1, 65536]"})
    steps_per_epoch: int = field(default=0, metadata={
        "help": "cap on steps per epoch; 0 = one pass over the weight half", "range": "[0, 1e9]"})
    lr: float = field(default=0.025, metadata={"help": "SGD learning rate of the weights (DARTS: 0.025)",
                                               "range": "(0, inf)", "resume_safe": True})
    lr_min: float = field(default=0.001, metadata={"help": "end of the cosine schedule (DARTS code: 0.001)",
                                                   "range": "[0, inf)", "resume_safe": True})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum", "range": "[0, 1)"})
    weight_decay: float = field(default=3e-4, metadata={"help": "weight decay of the weights (DARTS: 3e-4)",
                                                        "range": "[0, 1]"})
    grad_clip: float = field(default=5.0, metadata={"help": "gradient-norm clip of the weights (DARTS: 5); 0 = off",
                                                    "range": "[0, inf)", "resume_safe": True})
    arch_lr: float = field(default=3e-4, metadata={"help": "Adam learning rate of the alphas (DARTS: 3e-4)",
                                                   "range": "(0, inf)", "resume_safe": True})
    arch_betas: tuple[float, float] = field(default=(0.5, 0.999), metadata={"help": "Adam betas of the alphas",
                                                                           "range": "[0, 1)"})
    arch_weight_decay: float = field(default=1e-3, metadata={"help": "weight decay of the alphas (DARTS: 1e-3)",
                                                             "range": "[0, 1]"})
    order: int = field(default=1, metadata={"help": "1: first-order DARTS; 2: unrolled second order (Sec. 2.3)",
                                            "choices": (1, 2)})
    stop_when_stable: int = field(default=0, metadata={
        "help": "early stopping (DARTS+, Liang et al. 2019, Sec. 3.3: 10 of 50 epochs): stop once the derived cell "
                "has come out the same this many epochs running; the schedule stays laid out over --epochs, so the "
                "run is the full run's first epochs. 0 = run every epoch", "range": "[0, 100000]",
        "resume_safe": True})
    precision: str = field(default="fp32", metadata={
        "help": "fp32, or bf16: forward passes under bfloat16 autocast (the alphas, the weights and their updates stay "
                "float32). fp32 is the default on every device: on a tiny search bf16 moved the genotype trajectory "
                "more than float32's own rounding does (BENCHMARKS.md)", "choices": ("fp32", "bf16")})

    # settings that became search strategies: (strategy, its option) for the one-line error that says so
    retired = {"aux_skip": ("darts-minus", "beta0"), "beta_decay": ("beta-darts", "weight")}


@dataclass
class SearchConfig:
    space: str = field(default="darts", metadata={"help": "search space: darts (see `ssnas list`)"})
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    supernet: SpaceConfig = field(default_factory=SpaceConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    optim: SearchOptimConfig = field(default_factory=SearchOptimConfig)
    run: RunConfig = field(default_factory=RunConfig)


def validate(cfg: SearchConfig) -> None:
    """Cheap checks first, so a typo fails in a second rather than after the data has loaded: every setting against
    its declared range (ssnas.config.check_tree), the space, the objective's options, the device."""
    check_tree(cfg)
    registry.space(cfg.space)
    registry.objective(cfg.objective.name).check(cfg.objective)  # its options and the shared knobs it reads
    strategy = registry.strategy(cfg.strategy.name)
    strategy.check_schedule(strategy.check(cfg.strategy), cfg.optim.epochs)
    resolve_device(cfg.run.device)
    if cfg.optim.precision == "bf16" and cfg.run.kernels == "fast":
        raise UserError("--kernels fast computes in float32 (its custom backward passes are exact float kernels); "
                        "use --kernels auto or textbook with --precision bf16")


class Searcher:
    """The supernet, the objective and both optimisers; one `step` = one arch step + one weight step.
    Under torchrun (`ranks`), every rank holds the same supernet and averages both steps' gradients."""
    def __init__(self, cfg: SearchConfig, channels: int, mean: list[float], std: list[float],
                 device: torch.device, num_classes: int = 0, ranks: Ranks = SINGLE):
        self.cfg = cfg
        self.device = device
        self.ranks = ranks
        self.space = registry.space(cfg.space)
        objective_cls = registry.objective(cfg.objective.name)
        self.supernet = arch.build_supernet(cfg.space, cfg.supernet, channels)
        # the speed route where it was measured faster (ssnas.kernels.fast_route), in float32 only; cells recompute
        # either way
        bf16 = uses_bf16(device, cfg.optim.precision)
        use_fast_kernels(self.supernet, fast_route(cfg.run.kernels, device.type) and not bf16,
                         recompute_cells=cfg.supernet.recompute_cells)
        self.autocast = autocast_bf16(device, cfg.optim.precision)
        self.objective = objective_cls(cfg.objective, self.supernet.feature_dim, num_classes)
        if cfg.run.sync_bn:  # before `attach`, so that momentum copies normalise globally too
            use_global_batch_norm(self.supernet, ranks)
            use_global_batch_norm(self.objective, ranks)
        # channels_last: depthwise convs and pools, the bulk of a DARTS cell, run 2-5x faster in NHWC on CPU
        self.supernet.to(device, memory_format=torch.channels_last)
        self.objective.to(device)
        self.objective.attach(self.supernet)
        strategy_cls = registry.strategy(cfg.strategy.name)
        self.strategy = strategy_cls(strategy_cls.check(cfg.strategy), self.supernet, self.space.PRIMITIVES,
                                     cfg.optim.epochs)
        self.supernet.op_weighting = self.strategy.op_weights
        self.supernet.derivation = self.strategy.derive_scores
        self.alphas = self.supernet.arch_parameters()
        self.weights = self.supernet.weight_parameters() + [p for p in self.objective.parameters() if p.requires_grad]
        o = cfg.optim
        self.opt_w = torch.optim.SGD(self.weights, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
        self.opt_a = torch.optim.Adam(self.alphas, lr=o.arch_lr, betas=tuple(o.arch_betas),
                                      weight_decay=o.arch_weight_decay)
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt_w, o.epochs, eta_min=o.lr_min)
        self.batches = BatchMaker(self.objective, ViewMaker(cfg.augment, mean, std), ranks)
        # the batches one process makes of a whole global batch: the strategy's scores between epochs, which every
        # rank computes on the same images without collectives (share_strategy_decisions)
        self.whole_batches = BatchMaker(self.objective, self.batches.views)
        self.view_spec = self.batches.spec
        ranks.broadcast_([*self.supernet.state_dict().values(), *self.objective.state_dict().values()])

    # ---- batches -----------------------------------------------------------------------------------
    def make_batch(self, images: torch.Tensor, index: torch.Tensor, generator: torch.Generator,
                   labels: torch.Tensor | None = None) -> Batch:
        return self.batches(images, index, generator, labels)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        with self.autocast():  # --precision: bf16 forward passes; backward passes follow the forward's dtypes
            return self.objective(self.supernet, batch)

    # ---- steps -------------------------------------------------------------------------------------
    def arch_step(self, batch_w: Batch, batch_a: Batch, progress: float = 0.0) -> torch.Tensor:
        self.opt_a.zero_grad(set_to_none=True)
        if self.cfg.optim.order == 2:
            batches = {"train": batch_w, "val": batch_a}
            grads = unrolled_arch_grads(lambda which: self.loss(batches[which])["loss"], self.weights,
                                        self.alphas, self.opt_w, average=self.ranks.average)
            loss = torch.tensor(float("nan"))
        else:
            loss = self.loss(batch_a)["loss"]
            # only the alphas' gradients: the weights' would be thrown away, so autograd skips them.
            # backward(inputs=...) rather than autograd.grad: under autograd.grad a custom Function cannot
            # ask the engine whether a leaf's gradient is wanted (ssnas.kernels.conv.grad_wanted), so it would pay
            # for the conv weights' gradients anyway.
            loss.backward(inputs=self.alphas)
            grads = self.ranks.average([a.grad for a in self.alphas])  # under torchrun: the global batch's
        # every strategy's arch step comes through here: the averaged data gradient above (or, second order, in
        # unrolled_arch_grads), plus a penalty of the alphas alone, which every rank computes identically
        # The penalty sees the op-choice alphas only (not PC-DARTS's edge betas, which no strategy's formula covers)
        op_alphas = list(self.supernet.alphas().values())
        penalty = self.strategy.penalty(op_alphas, progress)
        if penalty is not None:  # depends on the alphas alone, so its gradient simply adds in both orders
            extra = dict(zip(map(id, op_alphas), torch.autograd.grad(penalty, op_alphas)))
            grads = [g if id(a) not in extra else extra[id(a)] if g is None else g + extra[id(a)]
                     for a, g in zip(self.alphas, grads)]
        for a, g in zip(self.alphas, grads):
            a.grad = torch.zeros_like(a) if g is None else g
        self.opt_a.step()
        return loss.detach()

    def weight_step(self, batch: Batch, progress: float) -> dict[str, torch.Tensor]:
        self.opt_w.zero_grad(set_to_none=True)
        out = self.loss(batch)
        out["loss"].backward(inputs=self.weights)
        self.ranks.average_grads(self.weights)  # under torchrun: the global batch's gradient, before clipping
        if self.cfg.optim.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.weights, self.cfg.optim.grad_clip)
        self.opt_w.step()
        self.objective.after_step(self.supernet, progress)
        return out

    def train_step(self, x_w: torch.Tensor, x_a: torch.Tensor, w_index: torch.Tensor, a_index: torch.Tensor,
                   labels: torch.Tensor | None, generator: torch.Generator, progress: float
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Views for both batches (`x_w`, `x_a`: the uint8 images at `w_index`, `a_index`), the architecture step,
        then the weight step (Algorithm 1 of DARTS). A strategy that does not train the alphas (now) gets the weight
        step alone."""
        self.strategy.before_step(self.supernet, progress)
        batch_w = self.batches.from_pixels(x_w, w_index, generator, None if labels is None else labels[w_index])
        arch_loss = torch.tensor(float("nan"))
        if self.strategy.wants_arch_step(progress):
            batch_a = self.batches.from_pixels(x_a, a_index, generator, None if labels is None else labels[a_index])
            arch_loss = self.arch_step(batch_w, batch_a, progress)
        return self.weight_step(batch_w, progress), arch_loss

    def share_strategy_decisions(self) -> None:
        """Under torchrun, after the strategy's work between epochs (pruning, projection, training-free scores):
        every rank has computed it on identical inputs (the same alphas, weights and held-out batches: `Tools`);
        rank 0's outcome, the strategy's state (alive ops, decided edges, scores: what a resume restores), is then
        given to every rank, so a rounding difference between devices can never make two ranks decide differently.
        """
        if self.ranks.active:
            self.strategy.load_state_dict(self.ranks.broadcast_object(self.strategy.state_dict()))

    # ---- state -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"supernet": self.supernet.state_dict(), "objective": self.objective.state_dict(),
                "opt_w": self.opt_w.state_dict(), "opt_a": self.opt_a.state_dict(),
                "schedule": self.schedule.state_dict(), "strategy": self.strategy.state_dict()}

    def take_changed_rates(self, changes: dict[str, Any]) -> None:
        """After loading a checkpoint: learning rates the resume changed (resume-safe keys) take effect from the
        next step, at the point of the schedule where the run stopped (the cosine's closed form, Loshchilov &
        Hutter 2017, Eq. 5). Unchanged rates are left exactly as saved, so a plain resume stays bit-identical."""
        o = self.cfg.optim
        if "optim.lr" in changes or "optim.lr_min" in changes:
            s = self.schedule
            s.base_lrs, s.eta_min = [o.lr] * len(s.base_lrs), o.lr_min
            lr = o.lr_min + (o.lr - o.lr_min) * (1 + math.cos(math.pi * s.last_epoch / s.T_max)) / 2
            for group in self.opt_w.param_groups:
                group["initial_lr"], group["lr"] = o.lr, lr
        if "optim.arch_lr" in changes:
            for group in self.opt_a.param_groups:
                group["lr"] = o.arch_lr

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.supernet.load_state_dict(state["supernet"])
        self.objective.load_state_dict(state["objective"])
        self.opt_w.load_state_dict(state["opt_w"])
        self.opt_a.load_state_dict(state["opt_a"])
        self.schedule.load_state_dict(state["schedule"])
        self.strategy.load_state_dict(state["strategy"])


class Tools:
    """What the search lends its strategy between epochs (`ssnas.strategies.base.SearchTools`): scores on fixed
    held-out batches of the architecture half, fresh views, a fresh supernet. Every draw is seeded by the run's
    seed and the strategy's round, so a resumed search scores exactly what an uninterrupted one did. Under torchrun
    every rank scores the same whole global batches, as one process would (Searcher.share_strategy_decisions)."""

    def __init__(self, searcher: Searcher, images: torch.Tensor | FolderImages, labels: torch.Tensor | None,
                 held_out: torch.Tensor, channels: int, say: Callable[[str], None] = lambda text: None):
        self.searcher = searcher
        self.say = say
        self.images, self.labels, self.held_out = images, labels, held_out
        self.channels = channels
        self._batches: dict[tuple[int, int], list[Batch]] = {}

    def _generator(self, round_: int, stream: int) -> torch.Generator:
        seed = epoch_seed(self.searcher.cfg.run.seed, 10_000 + round_, stream)
        return torch.Generator(device=self.searcher.device).manual_seed(seed)

    def held_out_batches(self, round_: int, count: int) -> list[Batch]:
        """The fixed held-out batches `objective_loss` scores on: `count` global batches of the architecture half,
        with their views, the same for every call with the same `round_`."""
        if (round_, count) not in self._batches:
            self._batches = {}  # one round's batches at a time
            b = self.searcher.cfg.optim.batch_size * self.searcher.ranks.world  # one global batch, whole
            order = torch.Generator().manual_seed(epoch_seed(self.searcher.cfg.run.seed, 10_000 + round_, 0))
            index = self.held_out[torch.randperm(len(self.held_out), generator=order)]
            views = self._generator(round_, 1)
            chosen = [index[k * b:(k + 1) * b] for k in range(max(1, min(count, len(index) // b)))]
            pixels = batches(self.images, chosen, self.searcher.device)
            self._batches[(round_, count)] = [
                self.searcher.whole_batches.from_pixels(next(pixels), i, views,
                                                  None if self.labels is None else self.labels[i])
                for i in chosen]
        return self._batches[(round_, count)]

    @torch.no_grad()
    def objective_loss(self, op_weights: Mapping[str, torch.Tensor], round_: int, batches: int) -> float:
        searcher, supernet = self.searcher, self.searcher.supernet
        installed = supernet.op_weighting
        supernet.op_weighting = lambda alphas: {k: w.to(alphas[k].device, alphas[k].dtype)
                                                for k, w in op_weights.items()}
        supernet.train()  # batch statistics, as in the search itself (DARTS-PT scores in train mode too)
        searcher.objective.train()
        try:
            losses = [float(searcher.loss(batch)["loss"]) for batch in self.held_out_batches(round_, batches)]
        finally:
            supernet.op_weighting = installed
        return sum(losses) / len(losses)

    def views(self, count: int, round_: int) -> torch.Tensor:
        order = torch.Generator().manual_seed(epoch_seed(self.searcher.cfg.run.seed, 10_000 + round_, 2))
        index = self.held_out[torch.randperm(len(self.held_out), generator=order)[:count]]
        return self.searcher.batches.views(next(batches(self.images, [index], self.searcher.device)),
                                           self._generator(round_, 3))

    def build_supernet(self, init_channels: int) -> nn.Module:
        cfg = self.searcher.cfg.supernet
        small = SpaceConfig(layers=cfg.layers, init_channels=init_channels, nodes=cfg.nodes,
                            stem_multiplier=cfg.stem_multiplier)
        return self.searcher.space.build_supernet(small, self.channels).to(self.searcher.device)


@dataclass
class SearchResult:
    genotype: Any
    out: Path
    epochs_run: int
    finished: bool = True
    history: list[dict[str, Any]] = field(default_factory=list)  # {"epoch", "genotype"} after every epoch
    alphas: list[torch.Tensor] = field(default_factory=list)  # the final architecture parameters (CPU copies)
    alive: dict[str, list[list[str]]] = field(default_factory=dict)  # the ops the strategy left, by cell kind and edge


def prepare_out(cfg: SearchConfig, out: Path) -> dict[str, Any] | None:
    """Return the checkpoint to resume from, if any, with what the resume changes under "changes"; refuse to
    overwrite an earlier run without --resume or --force (ssnas.runs.folder), and a resume that changes more than
    the resume-safe keys."""
    check_out(out, cfg.run.resume, cfg.run.force)
    ckpt = out / "checkpoint.pt"
    if not cfg.run.resume or not ckpt.exists():
        return None
    state = checkpoint.load(ckpt, kind="search")
    state["changes"] = resume_changes(state["config"], to_dict(cfg), resume_safe_keys(SearchConfig), out,
                                      defaults=to_dict(SearchConfig()))
    return state


def guard(searcher: Searcher, epoch: int, step: int, out: Path) -> None:
    """Stop with one line when a weight, an alpha or a BatchNorm statistic is NaN or infinite (ssnas.runs.guard)."""
    check_modules({"supernet": searcher.supernet, "objective": searcher.objective}, epoch, step, out, "search",
                  _rates(searcher.cfg))


def _rates(cfg: SearchConfig) -> dict[str, float]:
    return {"--lr": cfg.optim.lr, "--arch-lr": cfg.optim.arch_lr}


def run_search(cfg: SearchConfig, train: ImageSet | None = None, *,
               on_epoch: Callable[[int, dict[str, Any]], None] | None = None, ranks: Ranks = SINGLE) -> SearchResult:
    """Run (or resume) a search; `train` may be given directly (tests, benchmarks), else it is loaded.
    `on_epoch(epoch, stats)` runs after each epoch's checkpoint, with the epoch counted from 1 (tuning reports and
    prunes there); the numbers a loop adds to `stats` show in metrics.jsonl, TensorBoard and the epoch line. The run
    holds its output folder (ssnas.runs.folder.hold) from before it reads the checkpoint until it returns.
    Under torchrun, `ranks` (ssnas.runs.distributed.session) is this process's place: every step takes a global
    batch of batch_size x world images, each rank its shard, and only rank 0 holds the folder, writes and prints."""
    validate(cfg)
    record_world(cfg, ranks.world)
    out = Path(cfg.run.out)
    space = registry.space(cfg.space)
    # the ground truth is read before the data, so a bad table fails fast; only the logger ever consults it
    table = BenchmarkTable.load(cfg.run.benchmark, space.parse_text, space.NAME) if cfg.run.benchmark else None
    with hold_on_rank0(ranks, out, cfg.run.resume, cfg.run.force):
        return _run_search(cfg, out, prepare_out(cfg, out), space, table, train, on_epoch, ranks)


def search_data(cfg: SearchConfig, train: ImageSet | None = None
                ) -> tuple[ImageSet, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """The search's images (loaded unless given; unlabelled when the objective reads no label), the labels the
    objective may read (None for label-free ones), and the bilevel split: (train, labels, weight half, alpha half)."""
    if train is None:
        train = load_dataset(cfg.data, "train", seed=cfg.run.seed)
    labels = visible_labels(train, registry.objective(cfg.objective.name).labels, cfg.objective.labels_fraction,
                            cfg.run.seed)
    if labels is None:
        train = train.unlabeled()  # from here on, reading a label raises
    idx_w, idx_a = bilevel_split(len(train), cfg.data.train_portion, cfg.run.seed)
    return train, labels, idx_w, idx_a


def restore_search(run: Path, data_root: str | None = None) -> tuple[Searcher, Tools, int]:
    """A search run folder as it stood after its last finished epoch, on the CPU, for diagnostics: the Searcher
    (supernet, alphas, strategy state), the Tools its strategy scores with, and the epochs it had run."""
    if not (run / "config.json").is_file() or not (run / "checkpoint.pt").is_file():
        raise UserError(f"{run} holds no search run (config.json and checkpoint.pt); pass the --out of `ssnas search`")
    cfg = from_dict(SearchConfig, json.loads((run / "config.json").read_text()))
    if data_root:
        cfg.data.data_root = data_root
    train, labels, _, held_out = search_data(cfg)
    mean, std = train.mean_std()
    device = torch.device("cpu")
    searcher = Searcher(cfg, train.channels, mean, std, device,
                        num_classes=len(train.classes) if labels is not None else 0)
    state = checkpoint.load(run / "checkpoint.pt", kind="search")
    searcher.load_state_dict(state["searcher"])
    return searcher, Tools(searcher, on_device(train.images, device), labels, held_out, train.channels), \
        epochs_done(state)


def _run_search(cfg: SearchConfig, out: Path, resume_state: dict[str, Any] | None, space: Any,
                table: BenchmarkTable | None, train: ImageSet | None,
                on_epoch: Callable[[int, dict[str, Any]], None] | None, ranks: Ranks) -> SearchResult:
    console = Console(cfg.run.progress, cfg.run.quiet or not ranks.is_main)  # rank 0 alone prints
    threads = thread_settings.apply(cfg.run.threads)
    device = ranks.device(cfg.run.device)
    seed_everything(cfg.run.seed)
    train, labels, idx_w, idx_a = search_data(cfg, train)
    mean, std = train.mean_std()
    o = cfg.optim
    steps = epoch_steps(len(idx_w), cfg.run.global_batch_size, o.steps_per_epoch,
                        f"the weight half (a step takes {o.batch_size} x {ranks.world} processes)"
                        if ranks.active else "the weight half")
    derived = cfg.run.derive_log_every(steps)

    searcher = Searcher(cfg, train.channels, mean, std, device,
                        num_classes=len(train.classes) if labels is not None else 0, ranks=ranks)
    images = on_device(train.images, device)  # in memory: moved once; streamed: decoded batch by batch
    tools = Tools(searcher, images, labels, idx_a, train.channels, say=console.line)
    start_epoch, history = 0, []
    if resume_state is not None:
        searcher.load_state_dict(resume_state["searcher"])
        searcher.take_changed_rates(resume_state["changes"])
        torch.set_rng_state(resume_state["torch_rng"])
        start_epoch, history = epochs_done(resume_state), resume_history(resume_state)
    if ranks.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if resume_state is not None:
            record_resume(out, start_epoch, resume_state["changes"])
        checkpoint.write_json(out / "config.json", to_dict(cfg))
    weights = sum(p.numel() for p in searcher.supernet.weight_parameters())
    batch = (f"batch {o.batch_size} x {ranks.world} processes = {cfg.run.global_batch_size}" if ranks.active
             else f"batch {o.batch_size}")
    console.summary(f"ssnas search: {cfg.space} space, {cfg.objective.name} objective -> {out}", [
        ("data", f"{cfg.data.dataset}: {len(train)} images, {train.channels}x{train.image_size}x{train.image_size}"
                 + (", no labels read" if labels is None else ", labels read by the objective")),
        ("split", f"{len(idx_w)} train the weights, {len(idx_a)} the architecture (--train-portion "
                  f"{cfg.data.train_portion})"),
        ("steps", f"{steps} per epoch x {o.epochs} epochs, {batch}, order {o.order}"),
        ("supernet", f"{cfg.supernet.layers} cells of width {cfg.supernet.init_channels}: {weights / 1e6:.3f}M "
                     f"weights, {sum(a.numel() for a in searcher.alphas)} architecture parameters"),
        ("device", f"{device}, threads {thread_settings.describe(threads)}" if device.type == "cpu" else str(device)),
        ("resume", resume_words(start_epoch, o.epochs)),
    ], derived)
    log = RunLog(out, resume_epoch=start_epoch, resume_step=start_epoch * steps, tensorboard=cfg.run.tensorboard,
                 write=ranks.is_main)
    previous = space.genotype_from_json(history[-1]["genotype"], "history") if history else None
    stats: dict[str, Any] = {}
    last = o.epochs if not cfg.run.stop_after else min(o.epochs, start_epoch + cfg.run.stop_after)
    epoch = done = start_epoch
    training = searcher.strategy.needs_training()
    if not training:  # a training-free strategy decided before the first step: one record, no epochs
        last = min(last, start_epoch + 1)
    stop = _stop_reason(searcher.strategy, [h["genotype"] for h in history], o.stop_when_stable) if training else None
    stopped_early = stop is not None
    if stopped_early:  # resuming a search that had already settled (--stop-when-stable): nothing left to run
        last = start_epoch
    try:
        if start_epoch == 0:
            started = time.perf_counter()
            events = searcher.strategy.before_search(tools)
            searcher.share_strategy_decisions()
            if events:  # before the first epoch: epoch 0 (epochs count from 1)
                log.log("strategy", 0, epoch=0, seconds=round(time.perf_counter() - started, 3), **events)
        for epoch in range(start_epoch, last):
            if training:
                stats, parts = _run_epoch(searcher, images, labels, idx_w, idx_a, epoch, steps, log, out, console,
                                          history)
                guard(searcher, epoch, steps - 1, out)  # nothing of a diverged epoch is written
                searcher.schedule.step()
                ranks.check_same(searcher.alphas, "architecture parameters")  # so every rank derives the same cell
            else:
                stats, parts = {"loss": float("nan"), "seconds": 0.0, "images_per_s": 0.0}, []
            started = time.perf_counter()
            events = searcher.strategy.after_epoch(epoch, tools)
            searcher.share_strategy_decisions()
            if events:
                log.log("strategy", (epoch + 1) * steps, epoch=epoch + 1,
                        seconds=round(time.perf_counter() - started, 3), **events)
            genotype = searcher.supernet.derive()
            probs = searcher.supernet.probs()
            truth = epoch_truth(table, space.to_text(genotype)) if table is not None else {}
            history.append({"epoch": epoch + 1, "genotype": genotype.to_json(), "probs": probs,
                            **({"truth": truth} if truth else {})})
            genotypes = [h["genotype"] for h in history]
            stop = _stop_reason(searcher.strategy, genotypes, o.stop_when_stable) if training else None
            stopped_early = stop is not None
            if ranks.is_main:
                _write_epoch_outputs(out, genotype, probs, epoch, cfg, history,
                                     finished=epoch + 1 == o.epochs or not training or stopped_early)
            stats.update(search_diagnostics(probs, genotype, space.PARAMETER_FREE))
            stats.update(derivation_margins(searcher.supernet.derive_scores(), genotype, space.genotype_from_scores,
                                            searcher.supernet.primitives, searcher.supernet.edge_names))
            changed, total = changed_edges(previous, genotype)
            stats["genotype_changes"] = changed
            stats.update(truth)
            log.log("epoch", (epoch + 1) * steps, epoch=epoch + 1, **stats)
            if ranks.is_main:
                checkpoint.save(out / "checkpoint.pt", {
                    "epochs_done": epoch + 1, "config": to_dict(cfg), "searcher": searcher.state_dict(),
                    "torch_rng": torch.get_rng_state(), "history": history}, kind="search")
            done = epoch + 1
            log_epoch_pictures(log.writer, history, genotype, (epoch + 1) * steps)
            same = unchanged_epochs(genotypes)
            note = ("genotype: first" if previous is None else
                    f"genotype unchanged for {same} epoch{'s' if same > 1 else ''}"
                    if not changed else f"genotype: {changed} of {total} edges changed")
            console.line(epoch_line(epoch + 1, o.epochs, {k: v for k, v in stats.items() if k != "genotype_changes"},
                                    parts, [note, *truth_words(truth)]))
            previous = genotype
            if on_epoch is not None:
                on_epoch(epoch + 1, dict(stats))
            if stopped_early and epoch + 1 < o.epochs:
                log.log("early_stop", (epoch + 1) * steps, epoch=epoch + 1, patience=o.stop_when_stable,
                        epochs=o.epochs, reason=stop)
                console.line(f"stopping after epoch {epoch + 1} of {o.epochs}: {stop}")
                last = epoch + 1
                break
    except KeyboardInterrupt as e:
        raise interrupted(e, out, "ssnas search", epoch + 1, o.epochs, done) from None
    finally:
        log.close()
    genotype = searcher.supernet.derive()
    finished = last == o.epochs or not training or stopped_early
    if last > start_epoch and finished:
        warning = undecided_warning(stats)
        if warning:
            console.warn(f"{warning} (`ssnas show {out}` repeats this)")
    return SearchResult(genotype, out, last - start_epoch, finished=finished, history=history,
                        alphas=[a.detach().cpu().clone() for a in searcher.alphas],
                        alive=searcher.strategy.alive_ops())


def _stop_reason(strategy: Any, genotypes: list[Any], patience: int) -> str | None:
    """Why the search ends after this epoch (None: it goes on): the DARTS+ rule, as the strategy rules on it."""
    darts_plus = (f"the derived cell has not changed for {patience} epochs (--stop-when-stable {patience}, DARTS+)"
                  if settled(genotypes, patience) else None)
    return strategy.stop_reason(darts_plus)


def _run_epoch(searcher: Searcher, images: torch.Tensor | FolderImages, labels: torch.Tensor | None,
               idx_w: torch.Tensor, idx_a: torch.Tensor, epoch: int, steps: int, log: RunLog, out: Path,
               console: Console, history: list[dict[str, Any]]) -> tuple[dict[str, float], list[str]]:
    """One epoch (`epoch` counts from 0 here; every file and line counts from 1). Returns the epoch's means (loss,
    its parts, the architecture loss), time and images/s, and the names of the loss parts."""
    cfg = searcher.cfg
    b = cfg.optim.batch_size * searcher.ranks.world  # the global batch: each rank makes its shard (make_batch)
    order = torch.Generator().manual_seed(epoch_seed(cfg.run.seed, epoch, 0))
    perm_w = idx_w[torch.randperm(len(idx_w), generator=order)]
    perm_a = idx_a[torch.randperm(len(idx_a), generator=order)]
    mine = searcher.ranks.rows(b)  # this rank's rows of every global batch: it reads only those
    w_batches = [perm_w[step * b:(step + 1) * b][mine] for step in range(steps)]
    # the arch half may be smaller: it wraps around
    a_batches = [perm_a[torch.arange(step * b, (step + 1) * b) % len(perm_a)][mine] for step in range(steps)]
    pixels = batches(images, [i for pair in zip(w_batches, a_batches) for i in pair], searcher.device)
    augment = torch.Generator(device=searcher.device).manual_seed(epoch_seed(cfg.run.seed, epoch, 1))
    searcher.supernet.train()
    searcher.objective.train()
    sums: dict[str, float] = {}
    seen, started = 0, time.perf_counter()
    truth = history[-1].get("truth", {}) if history else {}
    note = f" ({'; '.join(truth_words(truth, 'last cell'))})" if truth else ""
    for step in console.steps(steps, f"epoch {epoch + 1}/{cfg.optim.epochs}{note}"):
        t0 = time.perf_counter()
        w_index, a_index = w_batches[step], a_batches[step]
        x_w, x_a = next(pixels), next(pixels)
        progress = (epoch * steps + step + 1) / (cfg.optim.epochs * steps)
        parts, arch_loss = searcher.train_step(x_w, x_a, w_index, a_index, labels, augment, progress)
        parts = searcher.ranks.mean_values({**parts, "arch_loss": arch_loss})  # the global batch's, on every rank
        arch_loss = parts.pop("arch_loss")
        loss = check_loss(parts["loss"].detach(), epoch, step, out, "search", _rates(cfg))
        if cfg.run.check_every and (step + 1) % cfg.run.check_every == 0:
            guard(searcher, epoch, step, out)
        images_per_s = b / (time.perf_counter() - t0)
        row = {"loss": loss, **{k: float(v) for k, v in parts.items() if k != "loss"}, "arch_loss": float(arch_loss)}
        for k, v in row.items():
            sums[k] = sums.get(k, 0.0) + v
        seen += 1
        console.postfix(loss=f"{loss:.4f}", img_s=f"{images_per_s:.1f}")
        global_step = epoch * steps + step + 1
        if step % cfg.run.log_interval(steps) == 0 or step == steps - 1:
            log.log("step", global_step, epoch=epoch + 1, **row, lr=searcher.opt_w.param_groups[0]["lr"],
                    images_per_s=round(images_per_s, 2))
    seconds = time.perf_counter() - started
    means = {k: v / max(seen, 1) for k, v in sums.items()}
    if not all(math.isfinite(v) for k, v in means.items() if k == "arch_loss"):
        means.pop("arch_loss")  # second order: the unrolled step reports no loss of its own
    parts = [k for k in means if k not in ("loss", "arch_loss")]
    return {**means, "seconds": round(seconds, 3), "images_per_s": round(seen * b / seconds, 2)}, parts


def truth_words(truth: dict[str, Any], what: str = "true") -> list[str]:
    """A benchmark's verdict on the derived cell for the epoch line and the progress bar (with --benchmark): its
    first column's true accuracy, rank and percentile (every column is in metrics.jsonl)."""
    first = next((k for k in truth if k.startswith("true_") and k != "true_missing"), None)
    if first is None:
        return ["not in the benchmark"] if truth.get("true_missing") else []
    column = first[len("true_"):]
    top = truth.get(f"top_pct_{column}")
    return [f"{what} {column} {truth[first]:.2f}, rank {truth[f'rank_{column}']}"
            + (f" (top {top:.1f}%)" if top is not None else "")]


def _write_epoch_outputs(out: Path, genotype: Any, probs: dict[str, Any], epoch: int, cfg: SearchConfig,
                         history: list[dict[str, Any]], finished: bool) -> None:
    """genotype.json (with `meta.finished`: the search has decided, after its last epoch or, for a training-free
    strategy, before any), alphas.json and genotypes.jsonl."""
    meta = {"epoch": epoch + 1, "epochs": cfg.optim.epochs, "finished": finished, "objective": cfg.objective.name,
            "dataset": cfg.data.dataset, "seed": cfg.run.seed, "run": str(out)}
    data = genotype.to_json()
    data["meta"] = meta
    checkpoint.write_json(out / "genotype.json", data)
    checkpoint.write_json(out / "alphas.json", probs)
    # the genotype (and alphas) after every epoch, rewritten from the checkpointed history so a resume never
    # duplicates rows
    checkpoint.write_text(out / "genotypes.jsonl", "".join(json.dumps(h) + "\n" for h in history))
