"""The contract every objective in ``objectives/`` fulfils; the search and retrain loops only know this.

An objective owns its heads (and, where the method needs them, momentum encoders and queues), says which
views it needs, returns ``{"loss": ..., <named parts>}`` from ``forward`` and updates its own state in
``after_step``. ``forward`` must not change state: the second-order architecture step calls it several
times on the same batch.

It also owns its settings: `Options` (typed, its own), `uses` (which shared knobs of `ObjectiveConfig` it
reads; only those are validated and tuned) and `tunable` (the ranges `ssnas tune` may search for its own
options). `check` validates all of it before any data is loaded.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from ssnas.config import Tunable, apply_overrides, check_tree
from ssnas.data.augment import Shard, ViewMaker
from ssnas.errors import UserError
from ssnas.runs.distributed import SINGLE, Ranks


@dataclass
class ObjectiveConfig:
    """Settings shared by the contrastive objectives; method-specific ones go to `options`."""

    name: str = field(default="simclr", metadata={"flag": "--objective",
                                                  "help": "what drives the search: simclr, or any objective listed by `ssnas list`"})
    temperature: float = field(default=0.5, metadata={
        "help": "softmax temperature of the contrastive loss (SimCLR App. B.9: 0.5 on CIFAR-10)", "range": "(0, 100]"})
    proj_hidden_dim: int = field(default=0, metadata={
        "help": "hidden width of the projection MLP; 0 = the encoder's feature size (SimCLR Sec. 2.1)",
        "range": "[0, 65536]"})
    proj_dim: int = field(default=128, metadata={"help": "output size of the projection head (SimCLR: 128)",
                                                 "range": "[1, 65536]"})
    labels_fraction: float = field(default=0.01, metadata={
        "help": "objectives that may read a few labels (suncet): the class-balanced share of training images "
                "whose labels they see; all others are -1", "range": "(0, 1]"})
    options: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "objective-specific settings, e.g. objective.queue_size=4096 for CLSA"})


@dataclass(frozen=True)
class ViewSpec:
    """How many augmented views of each image an objective consumes per step."""

    weak: int = 2
    strong: int = 0


@dataclass
class Batch:
    """What an objective sees: augmented views, instance ids, and labels only if it is allowed them.

    Under torchrun the batch is this rank's shard of the step's global batch, rows `ranks.rows(global_size)` of
    it. An objective whose loss couples images (negatives, a labelled set, a mix) makes it a loss over the global
    batch with `ranks.gather` (differentiable), taking this rank's rows as anchors: its loss is then this rank's
    share, and the mean over the ranks, which the loops' gradient averaging differentiates, is the loss of one
    process on the global batch. For one process `ranks.gather` is the identity.
    """

    views: list[torch.Tensor]
    index: torch.Tensor
    strong: list[torch.Tensor] = field(default_factory=list)
    labels: torch.Tensor | None = None  # -1 marks an unlabelled image
    # (mean, std), each [1, C, 1, 1], that the views were normalised with: a reconstruction loss measures its error
    # in [0, 1] pixel units with them (None: the views are taken as pixel values)
    pixel_stats: tuple[torch.Tensor, torch.Tensor] | None = None
    ranks: Ranks = SINGLE

    @property
    def offset(self) -> int:
        """Where this shard's rows start in the gathered (global) batch."""
        return self.ranks.rank * self.size

    @property
    def size(self) -> int:
        return int(self.index.numel())


@dataclass
class NoOptions:
    """For objectives without settings of their own."""


# The shared knobs of ObjectiveConfig an objective may read (its `uses`), and the ranges of those a study tunes.
SHARED_KNOBS = frozenset({"temperature", "proj_dim", "proj_hidden_dim", "labels_fraction"})
SHARED_TUNABLE = {
    "temperature": Tunable("objective.temperature", "float", 0.05, 1.0, log=True,
                           why="contrastive temperature; SimCLR App. B.9 grid {0.1, 0.5, 1.0}, CLSA/MoCo 0.2"),
}


def batch_seed(index: torch.Tensor, step: int) -> int:
    """A cheap, order-sensitive fingerprint of a batch's instance ids and a step counter: an objective that draws
    randomness in `forward` (i-Mix's mix, ConRec's corruption, a jigsaw's permutations) seeds a private generator
    with it, so repeated calls on one batch agree (second-order DARTS) and resumes are exact."""
    ids = index.detach().to("cpu", torch.long)
    weights = torch.arange(1, ids.numel() + 1, dtype=torch.long)
    return (int((ids * weights).sum()) * 1_000_003 + int(step) * 7_919 + 17) % (2**63 - 1)


class Objective(nn.Module):
    """Base class. Subclasses set `name`, optionally `Options`, `labels` and override `forward`."""

    name: ClassVar[str] = ""
    # "none": never reads labels (the search gets a dataset whose labels raise);
    # "fraction": reads only a chosen fraction (SuNCEt); "all": supervised.
    labels: ClassVar[str] = "none"
    Options: ClassVar[type] = NoOptions
    # the shared knobs of ObjectiveConfig this objective reads (a subset of SHARED_KNOBS)
    uses: ClassVar[frozenset[str]] = frozenset()
    # ranges `ssnas tune` may search for the objective's own options (keys "objective.<option>")
    tunable: ClassVar[tuple[Tunable, ...]] = ()

    @classmethod
    def tunables(cls) -> tuple[Tunable, ...]:
        """What a study over this objective tunes besides the augmentation: the shared knobs it uses, then its own."""
        return tuple(SHARED_TUNABLE[k] for k in sorted(cls.uses) if k in SHARED_TUNABLE) + tuple(cls.tunable)

    @classmethod
    def check(cls, cfg: ObjectiveConfig) -> Any:
        """Validate the shared knobs and this objective's options against their declared ranges (ssnas.config.
        check_tree), then `check_options`, before any data is loaded; returns the parsed options."""
        check_tree(cfg, "objective.")
        opts = parse_options(cls, cfg.options)
        check_tree(opts, "objective.", flags=False)
        cls.check_options(opts)
        return opts

    @classmethod
    def check_options(cls, opts: Any) -> None:
        """Refuse option values the objective cannot work with (a one-line UserError); none by default."""

    def __init__(self, cfg: ObjectiveConfig, feature_dim: int, num_classes: int = 0):
        super().__init__()
        self.cfg = cfg
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.opts = type(self).check(cfg)

    def view_spec(self) -> ViewSpec:
        return ViewSpec()

    def strong_view_maker(self, weak: Any) -> Callable[..., torch.Tensor] | None:
        """For objectives with ViewSpec.strong > 0: a callable (uint8 images, generator[, shard]) -> strong views,
        built on the weak `ViewMaker` it is given; under torchrun it is passed the `Shard` (ssnas.data.augment)
        and draws as the weak views do."""
        return None

    def attach(self, encoder: nn.Module) -> None:
        """Called once with the encoder before training: momentum copies are made here."""

    def forward(self, encoder: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    @torch.no_grad()
    def after_step(self, encoder: nn.Module, progress: float) -> None:
        """After each weight step; `progress` runs from 0 to 1 over training (for EMA schedules)."""

    def embed(self, encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The L2-normalised embedding [B, D] the loss compares (SimCLR's z = g(f(x))). Optional: continual
        retraining (ssnas.training.continual, CCL) distils the similarities between these embeddings, and refuses
        objectives without one (see `has_embed`)."""
        raise NotImplementedError(f"objective {self.name!r} defines no embed(encoder, x)")

    @classmethod
    def has_embed(cls) -> bool:
        return cls.embed is not Objective.embed


def parse_options(cls: type[Objective], options: dict[str, Any]) -> Any:
    """Validate an objective's `options` table against its `Options` dataclass."""
    valid = {f.name for f in dataclasses.fields(cls.Options)}
    unknown = sorted(set(options) - valid)
    if unknown:
        hint = f"valid: {', '.join(sorted(valid))}" if valid else "it takes no extra options"
        raise UserError(f"objective {cls.name!r} has no option {unknown[0]!r}; {hint}")
    return apply_overrides(cls.Options(), {k: options[k] for k in options}, prefix="objective.")


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """Losses are computed in float32 under mixed precision (16-bit activations), in float64 when given float64."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def projection_head(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """SimCLR's g(.) (Chen et al. 2020, Sec. 2.1): a 2-layer MLP, W2 relu(W1 h). BN after the hidden layer, as
    in SimCLR v2's and most CIFAR reproductions' heads, keeps small-batch training stable."""
    hidden = hidden_dim or in_dim
    return nn.Sequential(nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out_dim))


class BatchMaker:
    """Turns image indices into the Batch an objective asks for: its weak and strong views, the instance ids and
    the labels it may see. The search and the retrain loops share it. Under torchrun (`ranks`), it is given the
    step's global indices and makes this rank's shard, with the views one process would make of those rows."""

    def __init__(self, objective: Objective, views: ViewMaker, ranks: Ranks = SINGLE):
        self.views = views
        self.ranks = ranks
        self.spec = objective.view_spec()
        self.strong = objective.strong_view_maker(views)
        if self.spec.strong and self.strong is None:
            raise UserError(f"objective {objective.name!r} asks for strong views but defines no strong_view_maker")

    def __call__(self, images: torch.Tensor, index: torch.Tensor, generator: torch.Generator,
                 labels: torch.Tensor | None = None) -> Batch:
        """`images` uint8 NHWC on the training device; `index` the step's (global) batch; `labels`, if any, are
        those of `index` already. Under torchrun, this rank's rows of them."""
        if self.ranks.active:
            rows = self.ranks.rows(len(index))
            index, labels = index[rows], None if labels is None else labels[rows]
        return self.from_pixels(images[index.to(images.device)], index, generator, labels)

    def from_pixels(self, x: torch.Tensor, index: torch.Tensor, generator: torch.Generator,
                    labels: torch.Tensor | None = None) -> Batch:
        """The Batch of the images `x` (uint8 NHWC on the training device, already gathered: `images[index]`).
        Under torchrun `x` is this rank's shard of the step's global batch (every rank's shard the same size), and
        its views are the ones one process would make of those rows (ssnas.data.augment.Shard)."""
        extra: tuple[Shard, ...] = ()
        if self.ranks.active:
            n = len(index)
            extra = (Shard(self.ranks.rank * n, n * self.ranks.world),)
        views = [self.views(x, generator, *extra) for _ in range(self.spec.weak)]
        strong = [self.strong(x, generator, *extra) for _ in range(self.spec.strong)] if self.strong else []
        return Batch(views=views, index=index.to(x.device), strong=strong,
                     labels=None if labels is None else labels.to(x.device), pixel_stats=self.views.stats_on(x.device),
                     ranks=self.ranks)
