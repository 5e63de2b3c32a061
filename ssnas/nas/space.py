"""The contract every search space module in ``search_spaces/`` fulfils, and its shared settings."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from ssnas.kernels.recompute import recomputed


@dataclass
class SpaceConfig:
    """Size of the supernet. Defaults are DARTS's CIFAR-10 search (Liu et al. 2019, App. A.1.1)."""

    layers: int = field(default=8, metadata={"help": "cells in the supernet (DARTS search: 8)"})
    init_channels: int = field(default=16, metadata={"help": "channels of the first cell (DARTS search: 16)"})
    nodes: int = field(default=4, metadata={"help": "intermediate nodes per cell (DARTS: 4)"})
    stem_multiplier: int = field(default=3, metadata={"help": "stem width = stem_multiplier * init_channels"})
    partial_channels: int = field(default=1, metadata={
        "help": "PC-DARTS (Xu et al. 2020): only 1/K of each edge's channels go through the mixed op, the rest "
                "bypass it; K = 1 is off (exact DARTS); PC-DARTS uses 4 on CIFAR-10. Changes the search's "
                "semantics; darts space only"})
    edge_norm: bool = field(default=False, metadata={
        "help": "PC-DARTS's edge normalisation: a learnt softmax weight over each node's incoming edges, "
                "multiplied into the edge choice; off = exact DARTS; darts space only"})
    recompute_cells: bool = field(default=False, metadata={
        "help": "memory saving: keep only each cell's inputs for the backward pass and recompute the rest there "
                "(activation checkpointing); same outputs, gradients and BN statistics, one more forward per step"})


class Genotype(Protocol):
    """A discrete architecture: a frozen value that serialises to JSON and validates itself."""

    space: str

    def to_json(self) -> dict[str, Any]: ...


class Supernet(nn.Module):
    """A supernet is an encoder: images -> feature vectors, with architecture parameters beside its weights."""

    feature_dim: int
    # DARTS-'s auxiliary skip weight on stride-1 edges, set by the search loop each step; 0 = plain DARTS
    aux_skip: float = 0.0
    # --recompute-cells: cells run through ssnas.recompute.recomputed while training
    recompute_cells: bool = False

    def run_cell(self, cell: nn.Module, *args: Any) -> Any:
        """``cell(*args)``, recomputed in the backward pass instead of stored when `recompute_cells` is on."""
        if self.recompute_cells and self.training:
            return recomputed(cell, *args)
        return cell(*args)

    def arch_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def probs(self) -> dict[str, dict[str, dict[str, float]]]:
        """Softmaxed architecture weights: {cell kind: {edge name: {op: prob}}}."""
        raise NotImplementedError

    def derive(self) -> Genotype:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
