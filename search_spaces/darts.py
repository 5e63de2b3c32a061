"""The DARTS CNN search space (Liu, Simonyan, Yang, ICLR 2019, Sec. 2.1-2.4 and App. A.1.1).

A cell has two inputs (c_{k-2}, c_{k-1}), `nodes` intermediate nodes and outputs the concatenation of the
intermediate nodes. Each node sums two edges chosen from all earlier states. The network stacks
`layers` cells; those at 1/3 and 2/3 of the depth are reduction cells (stride 2, twice the channels).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ssnas.errors import UserError
from ssnas.nas.cell import SearchCell, total
from ssnas.nas.genotype import Cell, Edge
from ssnas.nas.mixed import MixedOp, PartialMixedOp
from ssnas.nas.network import global_pool
from ssnas.nas.ops import DARTS_OPS, FactorizedReduce, ReLUConvBN
from ssnas.nas.space import SpaceConfig
from ssnas.nas.supernet import Supernet

NAME = "darts"

# The 8 candidate ops, in DARTS's order (quark0/darts cnn/genotypes.py).
PRIMITIVES = [
    "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
    "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
]
CELL_KINDS = ("normal", "reduce")
# Ops without weights: a search that drifts to these has collapsed (Zela et al. 2020; Chu et al. 2021)
PARAMETER_FREE = frozenset({"none", "max_pool_3x3", "avg_pool_3x3", "skip_connect"})
# DARTS's CIFAR-10 evaluation network (Liu et al. 2019, App. A.2.1; quark0/darts cnn/train.py): 20 cells, C = 36
NETWORK_DEFAULTS = {"layers": 20, "init_channels": 36}
LAYERS_UNIT = "cells"
NNI_SPACE = "DARTS"  # nni.nas.hub.pytorch.DARTS
INPUTS = ("c_{k-2}", "c_{k-1}")  # how pictures and text name a cell's two inputs, states 0 and 1

Pair = tuple[str, int]


@dataclass(frozen=True)
class DartsGenotype:
    """Two `(op, input)` pairs per intermediate node, for the normal and the reduction cell.

    Node i (counting the two cell inputs as 0 and 1, so intermediate nodes are 2, 3, ...) owns pairs
    2(i-2) and 2(i-2)+1; an input index j < i names state j.
    """

    normal: tuple[Pair, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Pair, ...]
    reduce_concat: tuple[int, ...]
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    space: str = field(default=NAME, init=False)

    @property
    def nodes(self) -> int:
        return len(self.normal) // 2

    def cells(self) -> dict[str, Cell]:
        """Both cells as DAGs: states 0, 1 are the cell inputs (named c_{k-2}, c_{k-1}), nodes are 2, 3, ... as the
        genotype's input indices, `concat` and alphas.json number them; the output concatenates the `concat`
        states."""
        out = {}
        for kind in CELL_KINDS:
            pairs = getattr(self, kind)
            edges = tuple(Edge(j, 2 + p // 2, op) for p, (op, j) in enumerate(pairs))
            names = (*INPUTS, *(str(i + 2) for i in range(len(pairs) // 2)))  # nodes 2.. as in the genotype
            out[kind] = Cell(edges, names, inputs=2, output=tuple(getattr(self, f"{kind}_concat")), concat=True,
                             reduction=kind == "reduce")
        return out

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"space": NAME}
        for kind in CELL_KINDS:
            out[kind] = [[op, j] for op, j in getattr(self, kind)]
            out[f"{kind}_concat"] = list(getattr(self, f"{kind}_concat"))
        if self.meta:
            out["meta"] = dict(self.meta)
        return out

    @classmethod
    def from_json(cls, data: Any, source: str = "genotype") -> "DartsGenotype":
        """Parse and validate; every problem is a one-line UserError naming the field."""
        if not isinstance(data, dict):
            raise UserError(f"{source}: expected a JSON object with normal/reduce cells, got {type(data).__name__}")
        space = data.get("space", NAME)
        if space != NAME:
            raise UserError(f"{source}: field 'space' is {space!r}, but this is the {NAME!r} space; "
                            f"pass --space {space} or a DARTS genotype")
        unknown = set(data) - {"space", "meta", *CELL_KINDS, *(f"{k}_concat" for k in CELL_KINDS)}
        if unknown:
            raise UserError(f"{source}: unknown field(s) {sorted(unknown)}; a DARTS genotype has "
                            f"normal, normal_concat, reduce, reduce_concat (and optional meta)")
        cells = {kind: _parse_cell(data, kind, source) for kind in CELL_KINDS}
        if len(cells["normal"]) != len(cells["reduce"]):
            raise UserError(f"{source}: normal has {len(cells['normal'])} pairs but reduce has "
                            f"{len(cells['reduce'])}; both cells need two pairs per node")
        nodes = len(cells["normal"]) // 2
        concats = {kind: _parse_concat(data, kind, nodes, source) for kind in CELL_KINDS}
        meta = data.get("meta", {})
        if not isinstance(meta, dict):
            raise UserError(f"{source}: field 'meta' must be an object")
        return cls(cells["normal"], concats["normal"], cells["reduce"], concats["reduce"], meta)


def _parse_cell(data: dict, kind: str, source: str) -> tuple[Pair, ...]:
    if kind not in data:
        raise UserError(f"{source}: field {kind!r} is missing; a DARTS genotype needs both a normal and a reduce cell")
    pairs = data[kind]
    if not isinstance(pairs, (list, tuple)) or not pairs or len(pairs) % 2:
        n = len(pairs) if isinstance(pairs, (list, tuple)) else "no"
        raise UserError(f"{source}: field {kind!r} has {n} pairs; it needs two (op, input) pairs per node "
                        f"(8 for DARTS's 4 nodes)")
    parsed = []
    for p, pair in enumerate(pairs):
        where = f"{source}: field '{kind}[{p}]'"
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise UserError(f"{where} must be an [op, input] pair, got {pair!r}")
        op, j = pair
        if op not in PRIMITIVES or op == "none":
            raise UserError(f"{where}: {op!r} is not a DARTS op; use one of {PRIMITIVES[1:]}")
        node = 2 + p // 2
        if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < node:
            raise UserError(f"{where}: input {j!r} is out of range for node {node} (must be 0..{node - 1})")
        parsed.append((op, j))
    return tuple(parsed)


def _parse_concat(data: dict, kind: str, nodes: int, source: str) -> tuple[int, ...]:
    key = f"{kind}_concat"
    concat = data.get(key, list(range(2, 2 + nodes)))
    valid = range(2, 2 + nodes)
    if (not isinstance(concat, (list, tuple)) or not concat
            or any(isinstance(c, bool) or not isinstance(c, int) or c not in valid for c in concat)):
        raise UserError(f"{source}: field {key!r} must list intermediate nodes in {list(valid)}, got {concat!r}")
    return tuple(concat)


def _published(normal: list, reduce: list) -> DartsGenotype:
    return DartsGenotype(tuple(normal), (2, 3, 4, 5), tuple(reduce), (2, 3, 4, 5), {"source": "DARTS paper"})


# Verbatim from quark0/darts cnn/genotypes.py (HEAD f276dd3): first-order (V1) and second-order (V2) cells.
PUBLISHED: dict[str, DartsGenotype] = {
    "DARTS_V1": _published(
        [("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
         ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
        [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
         ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)]),
    "DARTS_V2": _published(
        [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
         ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
        [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
         ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)]),
}
PUBLISHED["DARTS"] = PUBLISHED["DARTS_V2"]


def edge_names(nodes: int) -> list[str]:
    """Edge k of a cell, in the order of the alpha rows: 'j->i' from state j into node i."""
    return [f"{j}->{i + 2}" for i in range(nodes) for j in range(i + 2)]


def derive_cell(weights: torch.Tensor, nodes: int) -> tuple[Pair, ...]:
    """DARTS's discretisation (Sec. 2.4): for each node keep the 2 incoming edges whose strongest non-`none`
    op weighs most, and on each kept edge that strongest op. Pairs are listed strongest edge first, as the
    reference code does."""
    none = PRIMITIVES.index("none")
    w = weights.detach().float().cpu().clone()
    w[:, none] = -math.inf
    pairs: list[Pair] = []
    start = 0
    for i in range(nodes):
        rows = w[start:start + i + 2]
        best_weight, best_op = rows.max(dim=1)
        # stable sort so that ties go to the lower input index, deterministically
        order = sorted(range(i + 2), key=lambda j: -best_weight[j].item())[:2]
        pairs.extend((PRIMITIVES[int(best_op[j])], j) for j in order)
        start += i + 2
    return tuple(pairs)


def genotype_from_scores(scores: Mapping[str, torch.Tensor]) -> DartsGenotype:
    """DARTS's discretisation of both cells (`derive_cell`); every node concatenated."""
    edges = len(scores["normal"])
    nodes = int((math.isqrt(9 + 8 * edges) - 3) // 2)  # edges = nodes (nodes + 3) / 2
    concat = tuple(range(2, 2 + nodes))
    cells = {kind: derive_cell(scores[kind], nodes) for kind in CELL_KINDS}
    return DartsGenotype(cells["normal"], concat, cells["reduce"], concat)


class DartsSearchCell(SearchCell):
    """Two inputs (c_{k-2}, c_{k-1}), `nodes` intermediate nodes, each the sum of one mixed op from every earlier
    state; the output concatenates the intermediate nodes (DARTS Sec. 2.1)."""

    def __init__(self, nodes: int, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool,
                 partial_channels: int = 1):
        super().__init__()
        self.reduction = reduction
        self.nodes = nodes
        # BN without affine parameters during search (App. A.1.1): a learnt scale would fight the alphas.
        self.pre0 = FactorizedReduce(c_pp, c, affine=False) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0, False)
        self.pre1 = ReLUConvBN(c_p, c, 1, 1, 0, affine=False)
        # edge k reads state sources[k]; reduction cells stride on the edges that read the cell's inputs
        self.sources = [j for i in range(nodes) for j in range(i + 2)]
        self.incoming = [list(range(i * (i + 3) // 2, (i + 1) * (i + 4) // 2)) for i in range(nodes)]
        self.strides = [2 if reduction and j < 2 else 1 for j in self.sources]
        if partial_channels > 1:  # PC-DARTS
            self.edges = nn.ModuleList(PartialMixedOp(PRIMITIVES, DARTS_OPS, c, s, partial_channels) for s in self.strides)
        else:
            self.edges = nn.ModuleList(MixedOp(PRIMITIVES, DARTS_OPS, c, s) for s in self.strides)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                edge_norm: torch.Tensor | None = None, aux_skip: float = 0.0) -> torch.Tensor:
        """`weights`: one row of op weights per edge; `edge_norm`: PC-DARTS's weight per edge (None: plain
        DARTS); `aux_skip`: DARTS-'s auxiliary skip weight (0: off)."""
        states = [self.pre0(s0), self.pre1(s1)]
        for incoming in self.incoming:  # node i: one edge from every earlier state
            terms = []
            for k in incoming:
                y = self.edge(k, states, weights)
                if edge_norm is not None:
                    y = y * edge_norm[k]  # PC-DARTS's edge normalisation (Xu et al. 2020, Sec. 3.3)
                if aux_skip and self.strides[k] == 1:
                    y = y + aux_skip * states[self.sources[k]]  # DARTS-'s auxiliary skip (Chu et al. 2021)
                terms.append(y)
            states.append(total(terms))
        return self.concat(states[2:])


def reduction_layers(layers: int) -> set[int]:
    """Cells at 1/3 and 2/3 of the depth reduce (DARTS Sec. 3.1.1)."""
    return {layers // 3, 2 * layers // 3}


class DartsSupernet(Supernet):
    """The over-parameterised network: every edge a mixed op over all 8 primitives."""

    def __init__(self, cfg: SpaceConfig, in_channels: int):
        super().__init__()
        if cfg.layers < 1 or cfg.init_channels < 1 or cfg.nodes < 1:
            raise UserError("--layers, --init-channels and --nodes must all be at least 1")
        k = cfg.partial_channels
        if k < 1 or cfg.init_channels % k:
            raise UserError(f"--partial-channels {k} must be >= 1 and divide --init-channels {cfg.init_channels} "
                            f"(PC-DARTS: 4 with 16 channels)")
        self.nodes = cfg.nodes
        self.primitives, self.edge_names = PRIMITIVES, edge_names(cfg.nodes)
        c_curr = cfg.stem_multiplier * cfg.init_channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_pp, c_p, c = c_curr, c_curr, cfg.init_channels
        reductions = reduction_layers(cfg.layers)
        self.cells = nn.ModuleList()
        reduction_prev = False
        for layer in range(cfg.layers):
            reduction = layer in reductions
            if reduction:
                c *= 2
            self.cells.append(DartsSearchCell(cfg.nodes, c_pp, c_p, c, reduction, reduction_prev, k))
            reduction_prev = reduction
            c_pp, c_p = c_p, cfg.nodes * c
        self.feature_dim = c_p
        n_edges = len(self.edge_names)
        # The reference code initialises alphas at 1e-3 * N(0, 1) (cnn/model_search.py): near-uniform
        # mixtures, with ties broken at random rather than by op order.
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(n_edges, len(PRIMITIVES)))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(n_edges, len(PRIMITIVES)))
        self.edge_norm = cfg.edge_norm
        if cfg.edge_norm:  # PC-DARTS's beta, one per edge; the reference code initialises them like the alphas
            self.betas_normal = nn.Parameter(1e-3 * torch.randn(n_edges))
            self.betas_reduce = nn.Parameter(1e-3 * torch.randn(n_edges))

    def alphas(self) -> dict[str, nn.Parameter]:
        return {"normal": self.alphas_normal, "reduce": self.alphas_reduce}

    def arch_parameters(self) -> list[nn.Parameter]:
        if self.edge_norm:
            return [self.alphas_normal, self.alphas_reduce, self.betas_normal, self.betas_reduce]
        return [self.alphas_normal, self.alphas_reduce]

    def edge_norm_weights(self, kind: str) -> torch.Tensor | None:
        """PC-DARTS Sec. 3.3: softmax of the betas over each node's incoming edges; None without edge norm."""
        if not self.edge_norm:
            return None
        betas = self.betas_reduce if kind == "reduce" else self.betas_normal
        out, start = [], 0
        for i in range(self.nodes):
            out.append(F.softmax(betas[start:start + i + 2], dim=-1))
            start += i + 2
        return torch.cat(out)

    def forward_maps(self, x: torch.Tensor) -> torch.Tensor:
        """The last cell's output; `forward` (the base class) pools it globally."""
        weights = self.op_weights()
        norms = {kind: self.edge_norm_weights(kind) for kind in CELL_KINDS}
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            kind = "reduce" if cell.reduction else "normal"
            s0, s1 = s1, cell(s0, s1, weights[kind], norms[kind], self.aux_skip)
        return s1

    def derive_scores(self) -> dict[str, torch.Tensor]:
        """softmax(alpha) per edge, times the edge weight under edge norm (PC-DARTS picks edges by the product,
        Sec. 3.3; the op on an edge is the same either way)."""
        scores = super().derive_scores()
        for kind in CELL_KINDS:
            norm = self.edge_norm_weights(kind)
            if norm is not None:
                scores[kind] = scores[kind] * norm.detach().unsqueeze(1)
        return scores

    def derive(self) -> DartsGenotype:
        return genotype_from_scores(self.derive_scores())


def build_supernet(cfg: SpaceConfig, in_channels: int) -> DartsSupernet:
    return DartsSupernet(cfg, in_channels)


def genotype_from_json(data: Any, source: str = "genotype") -> DartsGenotype:
    return DartsGenotype.from_json(data, source)


def parse_text(text: str, source: str = "genotype") -> None:
    """DARTS genotypes have no string format of their own (JSON, NNI dicts and genotypes.py files only)."""
    return None


def to_text(genotype: DartsGenotype) -> None:
    return None


# ---- NNI 3.0's DARTS space -----------------------------------------------------------------------------------
# `nni.nas.hub.pytorch.DARTS` builds each cell from `nni.nas.nn.pytorch.Cell(label='normal'|'reduce')`, whose
# node i (2..5; 0 and 1 are the cell inputs) holds two op slots k = 0, 1, each a `LayerChoice` labelled
# `op_{i}_{k}` and an `InputChoice(n_candidates=i, n_chosen=1)` labelled `input_{i}_{k}` (nni/nas/nn/pytorch/
# cell.py). A frozen architecture is therefore the flat dict
#
#     {'normal/op_2_0': 'sep_conv_3x3', 'normal/input_2_0': [0], ..., 'reduce/input_5_1': [1]}
#
# exactly as `DARTS.load_searched_model('darts-v2')` spells it (nni/nas/hub/pytorch/nasnet.py). An input is a
# one-element list because `n_chosen=1` makes it a `CategoricalMultiple`; a bare int is accepted on reading.
# Our pair 2(i-2)+k `(op, j)` is NNI's `op_{i}_{k}` = op, `input_{i}_{k}` = [j]. NNI's DARTS cell always
# concatenates every node (`merge_op='all'`), so a genotype with another concat has no NNI equivalent.
# A space searched with a choice of width or depth adds `width` / `depth` keys; they are kept in `meta`.

# NNI's DARTS.DARTS_OPS: DARTS's primitives without 'none' (NNI handles 'none' inside the differentiable cell)
NNI_DARTS_OPS = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
                 "dil_conv_3x3", "dil_conv_5x5")
# keys NNI adds when the space's width or number of cells was itself a choice (nasnet.py: nni.choice('width'|'depth'))
NNI_SPACE_KEYS = ("width", "depth")
_NNI_LABEL = re.compile(r"^(normal|reduce)/(op|input)_(\d+)_(\d+)$")


def to_nni(genotype: DartsGenotype) -> dict[str, Any]:
    """The dict that freezes NNI's DARTS space into `genotype` (keys in NNI's own order)."""
    if getattr(genotype, "space", None) != NAME:
        raise UserError(f"--to nni writes NNI's DARTS space; a {getattr(genotype, 'space', '?')!r} genotype has "
                        f"no DARTS-space dict")
    out: dict[str, Any] = {}
    for cell in CELL_KINDS:
        pairs = getattr(genotype, cell)
        nodes = len(pairs) // 2
        concat = tuple(getattr(genotype, f"{cell}_concat"))
        if concat != tuple(range(2, 2 + nodes)):
            raise UserError(f"field '{cell}_concat' is {list(concat)}, but NNI's DARTS cell concatenates every node "
                            f"({list(range(2, 2 + nodes))}); this genotype cannot be written as an NNI dict")
        for i in range(2, 2 + nodes):
            (op0, j0), (op1, j1) = pairs[2 * (i - 2)], pairs[2 * (i - 2) + 1]
            out[f"{cell}/op_{i}_0"], out[f"{cell}/op_{i}_1"] = op0, op1
            out[f"{cell}/input_{i}_0"], out[f"{cell}/input_{i}_1"] = [j0], [j1]
    return out


def _nni_input(value: Any, key: str, node: int, where: str) -> int:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{where}: field {key!r} must be one input index such as [0], got {value!r}")
    if not 0 <= value < node:
        raise UserError(f"{where}: field {key!r} is {value}, out of range for node {node} (must be 0..{node - 1})")
    return value


def from_nni(data: Mapping[str, Any], source: str = "NNI dict") -> DartsGenotype | None:
    """A genotype from NNI's DARTS-space dict, or None when its keys are not that space's labels; every problem
    of a DARTS-space dict is a one-line UserError naming the key."""
    keys = [k for k in data if k not in NNI_SPACE_KEYS]
    if not keys or not all(isinstance(k, str) and _NNI_LABEL.match(k) for k in keys):
        return None
    found: dict[str, dict[tuple[str, int, int], Any]] = {c: {} for c in CELL_KINDS}
    meta: dict[str, Any] = {}
    for key, value in data.items():
        if key in NNI_SPACE_KEYS:
            meta[key] = value
            continue
        m = _NNI_LABEL.match(key)
        cell, kind, node, slot = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
        if slot not in (0, 1) or node < 2:
            raise UserError(f"{source}: key {key!r} names node {node}, slot {slot}; DARTS nodes are 2, 3, ... with "
                            f"slots 0 and 1")
        found[cell][(kind, node, slot)] = value
    for cell in CELL_KINDS:
        if not found[cell]:
            raise UserError(f"{source}: field '{cell}/op_2_0' is missing; a DARTS architecture needs both a "
                            f"normal and a reduce cell")
    nodes = max(node for cell in CELL_KINDS for (_, node, _) in found[cell]) - 1
    cells: dict[str, list[list[Any]]] = {}
    for cell in CELL_KINDS:
        pairs = []
        for i in range(2, 2 + nodes):
            for k in (0, 1):
                op_key, in_key = f"{cell}/op_{i}_{k}", f"{cell}/input_{i}_{k}"
                for kind, key in (("op", op_key), ("input", in_key)):
                    if (kind, i, k) not in found[cell]:
                        raise UserError(f"{source}: field {key!r} is missing; every node of both cells needs "
                                        f"op_<node>_0/1 and input_<node>_0/1")
                op = found[cell][("op", i, k)]
                if op not in NNI_DARTS_OPS:
                    raise UserError(f"{source}: field {op_key!r} is {op!r}, not an op of NNI's DARTS space; use one "
                                    f"of {', '.join(NNI_DARTS_OPS)}")
                pairs.append([op, _nni_input(found[cell][("input", i, k)], in_key, i, source)])
        cells[cell] = pairs
    concat = list(range(2, 2 + nodes))
    genotype = DartsGenotype.from_json({"normal": cells["normal"], "normal_concat": concat,
                                        "reduce": cells["reduce"], "reduce_concat": concat}, source)
    if meta:
        genotype.meta.update({"nni": meta})
    return genotype


# ---- the evaluation network: a genotype stacked into the full-size network (DARTS cnn/model.py) -------------

def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Drop a whole path per sample with probability `drop_prob`, scaling survivors by 1/(1 - p) so the
    expectation is unchanged (ScheduledDropPath of NASNet, used by DARTS App. A.2.1; cnn/utils.py)."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask


class EvalCell(nn.Module):
    """A discrete cell: each node sums two ops of the genotype on two earlier states (affine BN throughout)."""

    def __init__(self, pairs: tuple[Pair, ...], concat: tuple[int, ...], c_pp: int, c_p: int, c: int,
                 reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.pre0 = FactorizedReduce(c_pp, c) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0)
        self.pre1 = ReLUConvBN(c_p, c, 1, 1, 0)
        # reduction cells stride on the edges that read the cell's inputs (states 0 and 1)
        self.ops = nn.ModuleList(DARTS_OPS[op](c, 2 if reduction and j < 2 else 1, True) for op, j in pairs)
        self.indices = [j for _, j in pairs]
        self.concat = list(concat)
        self.multiplier = len(concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for node in range(len(self.ops) // 2):
            total = None
            for k in (2 * node, 2 * node + 1):
                op = self.ops[k]
                h = op(states[self.indices[k]])
                # DARTS never drops an identity path: it carries the cell's input through unchanged
                if self.training and drop_prob > 0 and not isinstance(op, nn.Identity):
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """DARTS's CIFAR auxiliary tower (cnn/model.py AuxiliaryHeadCIFAR): on the 8x8 maps after the second
    reduction a 5x5/3 average pool gives 2x2; other sizes are pooled adaptively to 2x2 (same parameters)."""

    def __init__(self, c: int, num_classes: int):
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False)
        self.features = nn.Sequential(
            nn.Conv2d(c, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        x = self.pool(x) if x.shape[-1] == 8 else F.adaptive_avg_pool2d(x, 2)
        return self.classifier(self.features(x).flatten(1))


class DartsNetwork(nn.Module):
    """The evaluation network (DARTS Sec. 3.1.1 / App. A.2.1; cnn/model.py NetworkCIFAR): stem of 3C channels,
    `layers` cells of the genotype, reduction cells at 1/3 and 2/3 of the depth, global pooling, and with
    `num_classes` > 0 DARTS's linear classifier. `forward_features` returns the pooled features
    (`feature_dim`), `forward_maps` the map before that pooling; `forward` the logits (the features when
    num_classes is 0); `forward_with_aux` also returns the auxiliary logits while training. The training loop sets
    `drop_path_prob` (DARTS ramps it linearly with the epoch)."""

    def __init__(self, genotype: DartsGenotype, cfg: Any, in_channels: int, num_classes: int = 0):
        super().__init__()
        if cfg.auxiliary and num_classes < 1:
            raise UserError("the auxiliary head needs labels (num_classes >= 1); use --auxiliary only for "
                            "supervised training")
        self.genotype = genotype
        self.layers = cfg.layers
        self.drop_path_prob = 0.0
        c_curr = 3 * cfg.init_channels  # stem_multiplier = 3 in cnn/model.py
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_pp, c_p, c = c_curr, c_curr, cfg.init_channels
        reductions = reduction_layers(cfg.layers)
        self.aux_layer = 2 * cfg.layers // 3
        self.cells = nn.ModuleList()
        reduction_prev = False
        c_aux = 0
        for layer in range(cfg.layers):
            reduction = layer in reductions
            if reduction:
                c *= 2
            kind = "reduce" if reduction else "normal"
            cell = EvalCell(getattr(genotype, kind), getattr(genotype, f"{kind}_concat"), c_pp, c_p, c,
                            reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * c
            if layer == self.aux_layer:
                c_aux = c_p
        self.feature_dim = c_p
        self.num_classes = num_classes
        self.auxiliary_head = AuxiliaryHead(c_aux, num_classes) if cfg.auxiliary else None
        self.classifier = nn.Linear(c_p, num_classes) if num_classes else nn.Identity()

    def maps_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The last cell's output map and, while training with the tower, the auxiliary logits."""
        aux = None
        s0 = s1 = self.stem(x)
        for layer, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if layer == self.aux_layer and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        return s1, aux

    def forward_features_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        maps, aux = self.maps_with_aux(x)
        return global_pool(maps), aux

    def forward_maps(self, x: torch.Tensor) -> torch.Tensor:
        """The map `forward_features` pools: the last cell's output, [B, feature_dim, h, w]."""
        return self.maps_with_aux(x)[0]

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features, aux = self.forward_features_with_aux(x)
        return self.classifier(features), aux

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features_with_aux(x)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))


def check_network(cfg: Any) -> None:
    """DARTS's evaluation network: two reduction cells need at least 3 cells, and factorized reduction splits
    the channels in two."""
    if cfg.layers < 3:
        raise UserError(f"--layers {cfg.layers} is too small: the network needs at least 3 cells "
                        f"(two of them reduction cells, at 1/3 and 2/3 of the depth)")
    if cfg.init_channels < 2 or cfg.init_channels % 2:
        raise UserError(f"--init-channels {cfg.init_channels} must be an even number >= 2 "
                        f"(factorized reduction splits the channels in two)")
    cfg.validate()


def build_network(genotype: DartsGenotype, cfg: Any, in_channels: int, num_classes: int = 0) -> DartsNetwork:
    """`cfg` is an `ssnas.nas.network.NetworkConfig` (layers, init_channels, auxiliary, drop_path)."""
    if not isinstance(genotype, DartsGenotype):
        raise UserError(f"the darts space builds DARTS genotypes, got a {getattr(genotype, 'space', type(genotype).__name__)!r} one")
    return DartsNetwork(genotype, cfg, in_channels, num_classes)
