"""The search-space contract: what every module in `search_spaces/` (installed as `ssnas.search_spaces`) defines,
in full, and the supernet settings every space reads.

A space is one file. `ssnas.registry.space(name)` returns the module; tests/test_spaces.py checks every
registered space against `SearchSpace` (every member present) and runs its supernet, derivation, formats and
network. docs/spaces.md walks through a complete example.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, runtime_checkable

import torch
from torch import nn

from ssnas.errors import UserError
from ssnas.nas.genotype import Cell
from ssnas.nas.supernet import Supernet


@dataclass
class SpaceConfig:
    """Size of the supernet. Defaults are DARTS's CIFAR-10 search (Liu et al. 2019, App. A.1.1)."""

    layers: int = field(default=8, metadata={"help": "cells in the supernet (DARTS search: 8)", "range": "[1, 100]"})
    init_channels: int = field(default=16, metadata={"help": "channels of the first cell (DARTS search: 16)",
                                                     "range": "[1, 1024]"})
    nodes: int = field(default=4, metadata={"help": "intermediate nodes per cell (DARTS: 4)", "range": "[1, 16]"})
    stem_multiplier: int = field(default=3, metadata={"help": "stem width = stem_multiplier * init_channels",
                                                      "range": "[1, 16]"})
    partial_channels: int = field(default=1, metadata={
        "help": "PC-DARTS (Xu et al. 2020): only 1/K of each edge's channels go through the mixed op, the rest "
                "bypass it; K = 1 is off (exact DARTS); PC-DARTS uses 4 on CIFAR-10. Changes the search's "
                "semantics; darts space only", "range": "[1, 64]"})
    edge_norm: bool = field(default=False, metadata={
        "help": "PC-DARTS's edge normalisation: a learnt softmax weight over each node's incoming edges, "
                "multiplied into the edge choice; off = exact DARTS; darts space only"})
    recompute_cells: bool = field(default=False, metadata={
        "help": "memory saving: keep only each cell's inputs for the backward pass and recompute the rest there "
                "(activation checkpointing); same outputs, gradients and BN statistics, one more forward per step"})

    def check(self) -> None:
        if self.init_channels % self.partial_channels:
            raise UserError(f"supernet.partial_channels (--partial-channels) must divide --init-channels "
                            f"{self.init_channels} (PC-DARTS: 4 with 16 channels), got {self.partial_channels}")


@runtime_checkable
class Genotype(Protocol):
    """A discrete architecture: a frozen value that serialises to JSON and shows its cells uniformly."""

    space: str
    meta: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """`{"space": NAME, ...}`; the space's `genotype_from_json` reads it back."""

    def cells(self) -> dict[str, Cell]:
        """Every cell by kind, as a DAG of `Edge(source, target, op)` (pictures, export, show and evaluation
        read only this)."""


@runtime_checkable
class SearchSpace(Protocol):
    """The module `ssnas.search_spaces.<NAME>`. Every member is required; none has a default."""

    NAME: str  # the --space value; must match the file name
    PRIMITIVES: list[str]  # candidate ops, in the order of the alpha columns
    PARAMETER_FREE: frozenset[str]  # ops without weights: the collapse diagnostic counts them
    CELL_KINDS: tuple[str, ...]  # the cells of a genotype, and the keys of the supernet's alphas
    PUBLISHED: Mapping[str, Genotype]  # published genotypes by name ({} if none)
    NETWORK_DEFAULTS: Mapping[str, int]  # {"layers": ..., "init_channels": ...} of the space's own network
    LAYERS_UNIT: str  # what `layers` counts, for printed sizes ("cells", "cells per stage")
    NNI_SPACE: str  # the NNI 3.0 space `to_nni` freezes, for messages ("DARTS", "NasBench201")

    def build_supernet(self, cfg: SpaceConfig, in_channels: int) -> Supernet:
        """The supernet (textbook maths; the loops install ssnas.kernels' exact speed route)."""

    def genotype_from_scores(self, scores: Mapping[str, torch.Tensor]) -> Genotype:
        """The discretisation: scores by cell kind, (edges, ops) each, to a genotype."""

    def genotype_from_json(self, data: Any, source: str) -> Genotype:
        """Parse and validate `to_json`'s output; every problem is a one-line UserError naming the field."""

    def parse_text(self, text: str, source: str) -> Genotype | None:
        """The space's own string format, or None for text in another format."""

    def to_text(self, genotype: Genotype) -> str | None:
        """The genotype in the space's own string format, or None when the space has none."""

    def to_nni(self, genotype: Genotype) -> dict[str, Any]:
        """The dict that freezes NNI 3.0's version of this space; a UserError when NNI has no equivalent."""

    def from_nni(self, data: Mapping[str, Any], source: str) -> Genotype | None:
        """A genotype from NNI's dict of this space, or None when the dict's keys are not this space's."""

    def check_network(self, cfg: Any) -> None:
        """Refuse evaluation-network settings (`ssnas.nas.network.NetworkConfig`) this space cannot build."""

    def build_network(self, genotype: Genotype, cfg: Any, in_channels: int, num_classes: int = 0) -> nn.Module:
        """The evaluation network of a genotype, timm-style: `forward_features(x)` gives `feature_dim` pooled
        features; `forward(x)` gives `classifier(forward_features(x))`, where `classifier` is a linear layer with
        `num_classes` outputs, or nn.Identity() when num_classes is 0 (then `forward` returns the features).
        Heads the space's network has for labels besides it (DARTS's auxiliary tower) need num_classes too."""


REQUIRED = tuple(m for m in SearchSpace.__annotations__) + tuple(
    name for name, value in vars(SearchSpace).items() if callable(value) and not name.startswith("_"))
