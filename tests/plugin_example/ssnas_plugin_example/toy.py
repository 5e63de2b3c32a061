"""A toy space: one input, two nodes and three edges (0->1, 0->2, 1->2); the cell outputs node 2."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn

from ssnas.errors import UserError
from ssnas.nas.cell import SearchCell, total
from ssnas.nas.genotype import Cell, Edge
from ssnas.nas.mixed import MixedOp
from ssnas.nas.network import global_pool
from ssnas.nas.ops import ReLUConvBN, Zero
from ssnas.nas.space import SpaceConfig
from ssnas.nas.supernet import Supernet

NAME = "toy"
PRIMITIVES = ["none", "skip_connect", "conv_3x3", "avg_pool_3x3"]
PARAMETER_FREE = frozenset({"none", "skip_connect", "avg_pool_3x3"})
CELL_KINDS = ("cell",)
PUBLISHED: dict[str, Any] = {}
NETWORK_DEFAULTS = {"layers": 4, "init_channels": 16}
LAYERS_UNIT = "cells"
NNI_SPACE = "none (NNI has no toy space)"
EDGES = [(0, 1), (0, 2), (1, 2)]  # (source, target) of edge k
OPS = {  # name -> constructor(channels, stride, affine)
    "none": lambda c, stride, affine: Zero(stride),
    "skip_connect": lambda c, stride, affine: nn.Identity(),
    "conv_3x3": lambda c, stride, affine: ReLUConvBN(c, c, 3, stride, 1, affine),
    "avg_pool_3x3": lambda c, stride, affine: nn.AvgPool2d(3, stride, 1, count_include_pad=False),
}


@dataclass(frozen=True)
class ToyGenotype:
    ops: tuple[str, ...]  # one op per edge, in the order of EDGES
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    space: str = field(default=NAME, init=False)

    def cells(self) -> dict[str, Cell]:
        edges = tuple(Edge(i, j, op) for (i, j), op in zip(EDGES, self.ops))
        return {"cell": Cell(edges, names=("0", "1", "2"), inputs=1, output=(2,), concat=False)}

    def to_json(self) -> dict[str, Any]:
        return {"space": NAME, "ops": list(self.ops), **({"meta": dict(self.meta)} if self.meta else {})}


def genotype_from_json(data: Any, source: str = "genotype") -> ToyGenotype:
    if not isinstance(data, dict) or data.get("space", NAME) != NAME:
        raise UserError(f"{source}: not a {NAME} genotype")
    ops = data.get("ops")
    if not isinstance(ops, list) or len(ops) != len(EDGES) or any(op not in PRIMITIVES for op in ops):
        raise UserError(f"{source}: field 'ops' must list {len(EDGES)} ops out of {PRIMITIVES}, got {ops!r}")
    return ToyGenotype(tuple(ops), dict(data.get("meta", {})))


def genotype_from_scores(scores: Mapping[str, torch.Tensor]) -> ToyGenotype:
    """Every edge keeps its strongest op."""
    return ToyGenotype(tuple(PRIMITIVES[i] for i in scores["cell"].argmax(dim=-1).tolist()))


def parse_text(text: str, source: str = "genotype") -> None:
    return None  # no string format of its own


def to_text(genotype: ToyGenotype) -> None:
    return None


def to_nni(genotype: ToyGenotype) -> dict[str, Any]:
    raise UserError("NNI has no toy space; export the genotype as json")


def from_nni(data: Mapping[str, Any], source: str = "NNI dict") -> None:
    return None


class ToySearchCell(SearchCell):
    """Node j = the sum of the mixed ops on its incoming edges."""

    def __init__(self, channels: int):
        super().__init__()
        self.edges = nn.ModuleList(MixedOp(PRIMITIVES, OPS, channels, 1) for _ in EDGES)
        self.sources = [i for i, _ in EDGES]

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [x]
        for node in (1, 2):
            states.append(total([self.edge(k, states, weights) for k, (_, j) in enumerate(EDGES) if j == node]))
        return states[2]


class ToyCell(nn.Module):
    """The discrete cell: node j = the sum of its incoming edges' ops."""

    def __init__(self, ops: tuple[str, ...], channels: int):
        super().__init__()
        self.edges = nn.ModuleList(OPS[op](channels, 1, True) for op in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [x]
        for node in (1, 2):
            states.append(total([self.edges[k](states[i]) for k, (i, j) in enumerate(EDGES) if j == node]))
        return states[2]


class ToyNetwork(nn.Module):
    """A 3x3 conv stem, `layers` cells, global pooling; the supernet's body, and the found network's."""

    def __init__(self, make_cell, layers: int, channels: int, in_channels: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        self.cells = nn.ModuleList(make_cell(channels) for _ in range(layers))
        self.feature_dim = channels

    def forward_maps(self, x: torch.Tensor, *cell_args: Any) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x, *cell_args)
        return x

    def forward(self, x: torch.Tensor, *cell_args: Any) -> torch.Tensor:
        return global_pool(self.forward_maps(x, *cell_args))


class ToyEvalNetwork(ToyNetwork):
    """The found network: features from `forward_features`, logits (or the features) from `forward`."""

    def __init__(self, genotype: "ToyGenotype", layers: int, channels: int, in_channels: int, num_classes: int):
        super().__init__(lambda c: ToyCell(genotype.ops, c), layers, channels, in_channels)
        self.classifier = nn.Linear(channels, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))


class ToySupernet(Supernet):
    def __init__(self, cfg: SpaceConfig, in_channels: int):
        super().__init__()
        self.net = ToyNetwork(ToySearchCell, cfg.layers, cfg.init_channels, in_channels)
        self.feature_dim = self.net.feature_dim
        self.primitives, self.edge_names = PRIMITIVES, [f"{i}->{j}" for i, j in EDGES]
        self.alphas_cell = nn.Parameter(1e-3 * torch.randn(len(EDGES), len(PRIMITIVES)))

    def alphas(self) -> dict[str, nn.Parameter]:
        return {"cell": self.alphas_cell}

    def forward_maps(self, x: torch.Tensor) -> torch.Tensor:  # the base class's forward pools it
        return self.net.forward_maps(x, self.op_weights()["cell"])

    def derive(self) -> ToyGenotype:
        return genotype_from_scores(self.derive_scores())


def build_supernet(cfg: SpaceConfig, in_channels: int) -> ToySupernet:
    if cfg.partial_channels != 1 or cfg.edge_norm:
        raise UserError("--partial-channels and --edge-norm apply to the darts space only")
    return ToySupernet(cfg, in_channels)


def check_network(cfg: Any) -> None:
    if cfg.auxiliary or cfg.drop_path:
        raise UserError("the toy network has no auxiliary tower and no drop-path")
    cfg.validate()


def build_network(genotype: ToyGenotype, cfg: Any, in_channels: int, num_classes: int = 0) -> ToyEvalNetwork:
    return ToyEvalNetwork(genotype, cfg.layers, cfg.init_channels, in_channels, num_classes)
