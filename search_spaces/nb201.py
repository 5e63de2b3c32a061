"""The NAS-Bench-201 search space (Dong & Yang, ICLR 2020, Sec. 2.1).

A cell is a DAG of 4 nodes; node j sums one op from every earlier node, so the cell has 6 edges, each one
of 5 ops. The network: a 3x3 conv stem, three stages of N cells with C, 2C and 4C channels, separated by
ResNet basic blocks of stride 2, then BN-ReLU, global pooling and a linear classifier.

Here `SpaceConfig.layers` is N, the number of cells per stage (the benchmark's N = 5), and
`init_channels` is C (16). Unlike DARTS, every edge keeps its own argmax op, `none` included, and there is
no top-2 rule.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ssnas.errors import UserError
from ssnas.nas.mixed import MixedOp, SharedInput
from ssnas.nas.ops import ReLUConvBN, Zero
from ssnas.nas.space import SpaceConfig, Supernet

NAME = "nb201"
# The benchmark's op names, in its order (NAS-Bench-201 Sec. 2.1).
PRIMITIVES = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
PARAMETER_FREE = frozenset({"none", "skip_connect", "avg_pool_3x3"})
NODES = 4
# Edge k joins (source -> target), in the order of the benchmark string: 0->1, 0->2, 1->2, 0->3, 1->3, 2->3
EDGES = [(i, j) for j in range(1, NODES) for i in range(j)]
CELL_KINDS = ("cell",)
# The benchmark's own network when --layers/--init-channels are left unset: N = 5 cells per stage, C = 16
# (NAS-Bench-201 Sec. 2.1). `ssnas.network.resolved_network` reads these; DARTS's are 20 cells / C = 36.
NETWORK_DEFAULTS = {"layers": 5, "init_channels": 16}
LAYERS_UNIT = "cells per stage"  # what `layers` counts here, for printed sizes

NB201_OPS = {
    "none": lambda c, stride, affine: Zero(stride),
    "skip_connect": lambda c, stride, affine: nn.Identity(),
    "nor_conv_1x1": lambda c, stride, affine: ReLUConvBN(c, c, 1, stride, 0, affine),
    "nor_conv_3x3": lambda c, stride, affine: ReLUConvBN(c, c, 3, stride, 1, affine),
    "avg_pool_3x3": lambda c, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
}

_STRING = re.compile(r"^\|(.+)\|$")


@dataclass(frozen=True)
class NB201Genotype:
    """Six ops, one per edge, in the order of `EDGES`."""

    edges: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    space: str = field(default=NAME, init=False)

    @property
    def ops(self) -> list[str]:
        return list(self.edges)

    def to_string(self) -> str:
        """The benchmark's own format, e.g. |nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|...|."""
        nodes = []
        for j in range(1, NODES):
            nodes.append("|" + "|".join(f"{self.edges[k]}~{i}" for k, (i, t) in enumerate(EDGES) if t == j) + "|")
        return "+".join(nodes)

    @classmethod
    def from_string(cls, text: str, source: str = "genotype") -> "NB201Genotype":
        text = text.strip()
        nodes = text.split("+")
        if len(nodes) != NODES - 1:
            raise UserError(f"{source}: a NAS-Bench-201 string has {NODES - 1} '+'-separated nodes, got {len(nodes)} "
                            f"in {text!r}; e.g. |nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|"
                            f"nor_conv_3x3~1|skip_connect~2|")
        edges: list[str] = []
        for j, node in enumerate(nodes, start=1):
            match = _STRING.match(node)
            parts = match.group(1).split("|") if match else []
            if len(parts) != j:
                example = "|" + "|".join(f"op~{i}" for i in range(j)) + "|"
                raise UserError(f"{source}: node {j} must read {j} edge(s), written {example}, got {node!r}")
            for i, part in enumerate(parts):
                op, sep, src = part.partition("~")
                if op not in PRIMITIVES:
                    raise UserError(f"{source}: node {j}, edge {i}->{j}: {op!r} is not a NAS-Bench-201 op; "
                                    f"use one of {PRIMITIVES}")
                if not sep or src != str(i):
                    raise UserError(f"{source}: node {j}, edge {i}->{j}: input must be ~{i}, got {part!r}")
                edges.append(op)
        return cls(tuple(edges))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"space": NAME, "arch": self.to_string()}
        if self.meta:
            out["meta"] = dict(self.meta)
        return out

    @classmethod
    def from_json(cls, data: Any, source: str = "genotype") -> "NB201Genotype":
        if isinstance(data, str):
            return cls.from_string(data, source)
        if not isinstance(data, dict) or "arch" not in data:
            raise UserError(f"{source}: expected {{\"space\": \"nb201\", \"arch\": \"|op~0|+...\"}} or the string itself")
        if data.get("space", NAME) != NAME:
            raise UserError(f"{source}: field 'space' is {data['space']!r}, but this is the {NAME!r} space; "
                            f"pass --space {data['space']}")
        genotype = cls.from_string(str(data["arch"]), source)
        return cls(genotype.edges, dict(data.get("meta", {})))


def all_genotypes() -> Iterator[NB201Genotype]:
    """All 5^6 = 15,625 cells of the benchmark."""
    for ops in itertools.product(PRIMITIVES, repeat=len(EDGES)):
        yield NB201Genotype(ops)


class _Cell(nn.Module):
    """Node j = sum over i < j of edge(i -> j)(node i); the cell outputs node 3."""

    def __init__(self, edges: nn.ModuleList):
        super().__init__()
        self.edges = edges

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None, aux_skip: float = 0.0) -> torch.Tensor:
        nodes = [x]
        shared = [SharedInput(x)]  # work every edge leaving a node would repeat (ssnas.mixed)
        for j in range(1, NODES):
            total = None
            for k, (i, target) in enumerate(EDGES):
                if target != j:
                    continue
                edge = self.edges[k]
                y = edge(nodes[i]) if weights is None else edge(nodes[i], weights[k], shared[i])
                if aux_skip:
                    y = y + aux_skip * nodes[i]  # DARTS-'s auxiliary skip (Chu et al. 2021)
                total = y if total is None else total + y
            nodes.append(total)
            shared.append(SharedInput(total))
        return nodes[-1]


class ResidualReduction(nn.Module):
    """The benchmark's reduction block: a ResNet basic block with stride 2 (NAS-Bench-201 Sec. 2.1)."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1, affine)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1, affine)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class _Macro(nn.Module):
    """Stem, 3 stages of N cells, two reductions, BN-ReLU, global pooling."""

    def __init__(self, make_cell, cells_per_stage: int, channels: int, in_channels: int, affine: bool):
        super().__init__()
        if cells_per_stage < 1 or channels < 1:
            raise UserError("NAS-Bench-201 needs --layers (cells per stage) and --init-channels of at least 1")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        blocks: list[nn.Module] = []
        c = channels
        for stage in range(3):
            if stage:
                blocks.append(ResidualReduction(c, 2 * c, affine))
                c *= 2
            blocks.extend(make_cell(c) for _ in range(cells_per_stage))
        self.blocks = nn.ModuleList(blocks)
        self.last = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=False))
        self.feature_dim = c

    def features(self, x: torch.Tensor, weights: torch.Tensor | None, aux_skip: float = 0.0,
                 run_cell: Callable[..., torch.Tensor] = lambda cell, *args: cell(*args)) -> torch.Tensor:
        """`run_cell(cell, *args)` runs each searched cell (Supernet.run_cell); a plain call by default."""
        x = self.stem(x)
        for block in self.blocks:
            x = run_cell(block, x, weights, aux_skip) if isinstance(block, _Cell) and weights is not None else block(x)
        return F.adaptive_avg_pool2d(self.last(x), 1).flatten(1)


class NB201Supernet(Supernet):
    """Every edge a mixed op over the 5 ops; one alpha matrix shared by all cells (the benchmark has one cell)."""

    def __init__(self, cfg: SpaceConfig, in_channels: int):
        super().__init__()
        if cfg.partial_channels != 1 or cfg.edge_norm:
            raise UserError("--partial-channels and --edge-norm (PC-DARTS) apply to the darts space only; "
                            "drop them for --space nb201")
        # affine-free BN in the search, as DARTS does (and as the benchmark's DARTS baseline does)
        make_cell = lambda c: _Cell(nn.ModuleList(MixedOp(PRIMITIVES, NB201_OPS, c, 1, pool_bn_in_search=False)
                                                  for _ in EDGES))
        self.macro = _Macro(make_cell, cfg.layers, cfg.init_channels, in_channels, affine=False)
        self.feature_dim = self.macro.feature_dim
        self.recompute_cells = cfg.recompute_cells
        self.alphas_cell = nn.Parameter(1e-3 * torch.randn(len(EDGES), len(PRIMITIVES)))

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas_cell]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.macro.features(x, F.softmax(self.alphas_cell, dim=-1), self.aux_skip, self.run_cell)

    def probs(self) -> dict[str, dict[str, dict[str, float]]]:
        p = F.softmax(self.alphas_cell.detach().float(), dim=-1).cpu()
        return {"cell": {f"{i}->{j}": {op: float(p[k, o]) for o, op in enumerate(PRIMITIVES)}
                         for k, (i, j) in enumerate(EDGES)}}

    def derive(self) -> NB201Genotype:
        """Each edge keeps its strongest op, `none` included (the benchmark's DARTS baseline does the same)."""
        best = self.alphas_cell.detach().argmax(dim=-1).tolist()
        return NB201Genotype(tuple(PRIMITIVES[b] for b in best))


class NB201Network(nn.Module):
    """The discrete network of one benchmark cell; `classifier` only when num_classes > 0."""

    def __init__(self, genotype: NB201Genotype, cells_per_stage: int = 5, channels: int = 16, in_channels: int = 3,
                 num_classes: int = 0):
        super().__init__()
        self.genotype = genotype
        make_cell = lambda c: _Cell(nn.ModuleList(NB201_OPS[op](c, 1, True) for op in genotype.edges))
        self.macro = _Macro(make_cell, cells_per_stage, channels, in_channels, affine=True)
        self.feature_dim = self.macro.feature_dim
        self.classifier = nn.Linear(self.feature_dim, num_classes) if num_classes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.macro.features(x, None)
        return features if self.classifier is None else self.classifier(features)


def build_supernet(cfg: SpaceConfig, in_channels: int) -> NB201Supernet:
    return NB201Supernet(cfg, in_channels)


def check_network(cfg: Any) -> None:
    """The evaluation settings this space can build (called by `ssnas.network.resolved_network`): sizes of at
    least 1, and none of DARTS's extras, since the benchmark's network has no auxiliary tower and no drop-path."""
    if cfg.layers < 1 or cfg.init_channels < 1:
        raise UserError(f"NAS-Bench-201 needs --layers (cells per stage) and --init-channels of at least 1, got "
                        f"{cfg.layers} and {cfg.init_channels}; the benchmark's network is --layers 5 --init-channels 16")
    if cfg.auxiliary or cfg.drop_path:
        raise UserError("--auxiliary and --drop-path belong to DARTS's evaluation network; NAS-Bench-201's has "
                        "neither, so turn them off (--no-auxiliary --drop-path 0) for an nb201 genotype")


def build_network(genotype: NB201Genotype, cfg: Any, in_channels: int = 3, num_classes: int = 0) -> NB201Network:
    """`cfg` needs `layers` (cells per stage) and `init_channels`."""
    if not isinstance(genotype, NB201Genotype):
        raise UserError(f"the nb201 space builds NAS-Bench-201 genotypes, got a "
                        f"{getattr(genotype, 'space', type(genotype).__name__)!r} one")
    return NB201Network(genotype, cfg.layers, cfg.init_channels, in_channels, num_classes)


def genotype_from_json(data: Any, source: str = "genotype") -> NB201Genotype:
    return NB201Genotype.from_json(data, source)


def genotype_from_string(text: str, source: str = "genotype") -> NB201Genotype | None:
    """The benchmark's string (`ssnas.genotypes.load_genotype`'s hook for genotypes written as text), or None
    when `text` is not in that format; a string that starts with '|' but is malformed is a UserError."""
    if not isinstance(text, str) or not text.strip().startswith("|"):
        return None
    return NB201Genotype.from_string(text, source)
