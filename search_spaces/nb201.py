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
from typing import Any, Iterator, Mapping

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

NAME = "nb201"
# The benchmark's op names, in its order (NAS-Bench-201 Sec. 2.1).
PRIMITIVES = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
PARAMETER_FREE = frozenset({"none", "skip_connect", "avg_pool_3x3"})
NODES = 4
# Edge k joins (source -> target), in the order of the benchmark string: 0->1, 0->2, 1->2, 0->3, 1->3, 2->3
EDGES = [(i, j) for j in range(1, NODES) for i in range(j)]
CELL_KINDS = ("cell",)
# The benchmark's own network when --layers/--init-channels are left unset: N = 5 cells per stage, C = 16
# (NAS-Bench-201 Sec. 2.1); DARTS's are 20 cells / C = 36.
NETWORK_DEFAULTS = {"layers": 5, "init_channels": 16}
LAYERS_UNIT = "cells per stage"  # what `layers` counts here, for printed sizes
PUBLISHED: dict[str, Any] = {}  # the benchmark publishes every cell; none is singled out by name here
NNI_SPACE = "NasBench201"  # nni.nas.hub.pytorch.NasBench201

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

    def cells(self) -> dict[str, Cell]:
        """The one cell: node 0 is its input, node 3 its output, an edge i -> j for every i < j (`none` too)."""
        edges = tuple(Edge(i, j, op) for (i, j), op in zip(EDGES, self.edges))
        return {"cell": Cell(edges, tuple(str(n) for n in range(NODES)), inputs=1, output=(NODES - 1,),
                             concat=False, title=self.to_string())}

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


# edge k of node j: the k with EDGES[k] = (i, j), in order of i
INCOMING = [[k for k, (_, t) in enumerate(EDGES) if t == j] for j in range(NODES)]


class NB201SearchCell(SearchCell):
    """Node j = sum over i < j of the mixed op on edge i -> j of node i; the cell outputs node 3."""

    def __init__(self, channels: int):
        super().__init__()
        # affine-free BN in the search, as DARTS does (and as the benchmark's DARTS baseline does)
        self.edges = nn.ModuleList(MixedOp(PRIMITIVES, NB201_OPS, channels, 1, pool_bn_in_search=False)
                                   for _ in EDGES)
        self.sources = [i for i, _ in EDGES]

    def forward(self, x: torch.Tensor, weights: torch.Tensor, aux_skip: float = 0.0) -> torch.Tensor:
        """`weights`: one row of op weights per edge; `aux_skip`: DARTS-'s auxiliary skip weight (0: off)."""
        nodes = [x]
        for j in range(1, NODES):
            terms = []
            for k in INCOMING[j]:
                y = self.edge(k, nodes, weights)
                if aux_skip:
                    y = y + aux_skip * nodes[self.sources[k]]  # DARTS-'s auxiliary skip (Chu et al. 2021)
                terms.append(y)
            nodes.append(total(terms))
        return nodes[-1]


class NB201Cell(nn.Module):
    """A discrete cell: node j = sum over i < j of op(i -> j)(node i); the cell outputs node 3."""

    def __init__(self, ops: tuple[str, ...], channels: int):
        super().__init__()
        self.edges = nn.ModuleList(NB201_OPS[op](channels, 1, True) for op in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in range(1, NODES):
            nodes.append(total([self.edges[k](nodes[EDGES[k][0]]) for k in INCOMING[j]]))
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

    def forward_maps(self, x: torch.Tensor, *cell_args: Any) -> torch.Tensor:
        """The map before the global pooling; `cell_args` go to every searchable cell (its op weights and
        DARTS-'s skip weight)."""
        x = self.stem(x)
        for block in self.blocks:
            x = block(x, *cell_args) if isinstance(block, SearchCell) else block(x)
        return self.last(x)

    def forward(self, x: torch.Tensor, *cell_args: Any) -> torch.Tensor:
        return global_pool(self.forward_maps(x, *cell_args))


class NB201Supernet(Supernet):
    """Every edge a mixed op over the 5 ops; one alpha matrix shared by all cells (the benchmark has one cell)."""

    def __init__(self, cfg: SpaceConfig, in_channels: int):
        super().__init__()
        if cfg.partial_channels != 1 or cfg.edge_norm:
            raise UserError("--partial-channels and --edge-norm (PC-DARTS) apply to the darts space only; "
                            "drop them for --space nb201")
        self.macro = _Macro(NB201SearchCell, cfg.layers, cfg.init_channels, in_channels, affine=False)
        self.feature_dim = self.macro.feature_dim
        self.primitives, self.edge_names = PRIMITIVES, [f"{i}->{j}" for i, j in EDGES]
        self.alphas_cell = nn.Parameter(1e-3 * torch.randn(len(EDGES), len(PRIMITIVES)))

    def alphas(self) -> dict[str, nn.Parameter]:
        return {"cell": self.alphas_cell}

    def forward_maps(self, x: torch.Tensor) -> torch.Tensor:
        return self.macro.forward_maps(x, self.op_weights()["cell"], self.aux_skip)

    def derive(self) -> NB201Genotype:
        return genotype_from_scores(self.derive_scores())


def genotype_from_scores(scores: Mapping[str, torch.Tensor]) -> NB201Genotype:
    """Each edge keeps its strongest op, `none` included (the benchmark's DARTS baseline does the same)."""
    best = scores["cell"].argmax(dim=-1).tolist()
    return NB201Genotype(tuple(PRIMITIVES[b] for b in best))


class NB201Network(nn.Module):
    """The discrete network of one benchmark cell: `forward_features` gives the pooled features; `forward` the
    logits of the benchmark's linear classifier when num_classes > 0, else the features."""

    def __init__(self, genotype: NB201Genotype, cells_per_stage: int = 5, channels: int = 16, in_channels: int = 3,
                 num_classes: int = 0):
        super().__init__()
        self.genotype = genotype
        self.macro = _Macro(lambda c: NB201Cell(genotype.edges, c), cells_per_stage, channels, in_channels, affine=True)
        self.feature_dim = self.macro.feature_dim
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.feature_dim, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.macro(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.macro(x))

    def forward_maps(self, x: torch.Tensor) -> torch.Tensor:
        """The map `forward_features` pools."""
        return self.macro.forward_maps(x)


def build_supernet(cfg: SpaceConfig, in_channels: int) -> NB201Supernet:
    return NB201Supernet(cfg, in_channels)


def check_network(cfg: Any) -> None:
    """The evaluation settings this space can build (called by `ssnas.arch.resolved_network`): sizes of at
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


def parse_text(text: str, source: str = "genotype") -> NB201Genotype | None:
    """The benchmark's string, or None when `text` is not in that format; a string that starts with '|' but is
    malformed is a UserError."""
    if not isinstance(text, str) or not text.strip().startswith("|"):
        return None
    return NB201Genotype.from_string(text, source)


def to_text(genotype: NB201Genotype) -> str:
    return genotype.to_string()


# ---- NNI 3.0's NAS-Bench-201 space ----------------------------------------------------------------------------
# NNI's NAS-Bench-201 space (`nni.nas.hub.pytorch.NasBench201`) builds every cell from one `NasBench201Cell(
# label='cell')`, whose edge i -> j is a `LayerChoice` labelled `{i}_{j}` (nni/nas/hub/pytorch/modules/
# nasbench201.py), so its dict is {'cell/0_1': 'conv_3x3', 'cell/0_2': ..., 'cell/2_3': ...}. NNI spells two ops
# differently from the benchmark (`conv_3x3` / `conv_1x1` for `nor_conv_3x3` / `nor_conv_1x1`); they are
# translated here and only here.

TO_NNI_OPS = {"none": "none", "skip_connect": "skip_connect", "nor_conv_1x1": "conv_1x1",
              "nor_conv_3x3": "conv_3x3", "avg_pool_3x3": "avg_pool_3x3"}
FROM_NNI_OPS = {v: k for k, v in TO_NNI_OPS.items()}
# (NNI label, our edge index) of the 6 edges, in NNI's creation order (which is also ours)
NNI_LABELS = [(f"cell/{i}_{j}", k) for k, (i, j) in enumerate(EDGES)]


def to_nni(genotype: NB201Genotype) -> dict[str, str]:
    """The dict that freezes NNI's NasBench201 space into a NAS-Bench-201 genotype."""
    if getattr(genotype, "space", None) != NAME:
        raise UserError(f"--to nni writes NNI's NasBench201 space here; a {getattr(genotype, 'space', '?')!r} "
                        f"genotype has no NasBench201 dict")
    return {label: TO_NNI_OPS[genotype.edges[k]] for label, k in NNI_LABELS}


def from_nni(data: Mapping[str, Any], source: str = "NNI dict") -> NB201Genotype | None:
    """A genotype from NNI's NasBench201 dict (keys 'cell/<i>_<j>'), or None for another space's dict; every
    problem is a one-line UserError naming the key."""
    if not data or not all(isinstance(k, str) and k.startswith("cell/") for k in data):
        return None
    known = {label for label, _ in NNI_LABELS}
    for key in data:
        if key not in known:
            raise UserError(f"{source}: key {key!r} is not an edge of NNI's NasBench201 cell; its edges are "
                            f"{', '.join(sorted(known))}")
    ops = [""] * len(NNI_LABELS)
    for label, k in NNI_LABELS:
        if label not in data:
            raise UserError(f"{source}: field {label!r} is missing; a NAS-Bench-201 cell needs all 6 edges "
                            f"({', '.join(label for label, _ in NNI_LABELS)})")
        op = data[label]
        if op not in FROM_NNI_OPS:
            raise UserError(f"{source}: field {label!r} is {op!r}, not an op of NNI's NasBench201 space; use one "
                            f"of {', '.join(FROM_NNI_OPS)}")
        ops[k] = FROM_NNI_OPS[op]
    return NB201Genotype(tuple(ops))
