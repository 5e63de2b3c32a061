"""NNI 3.0's architecture dicts for its DARTS and NAS-Bench-201 spaces, both ways.

`nni.nas.hub.pytorch.DARTS` builds each cell from `nni.nas.nn.pytorch.Cell(label='normal'|'reduce')`, whose
node i (2..5; 0 and 1 are the cell inputs) holds two op slots k = 0, 1, each a `LayerChoice` labelled
`op_{i}_{k}` and an `InputChoice(n_candidates=i, n_chosen=1)` labelled `input_{i}_{k}` (nni/nas/nn/pytorch/
cell.py). A frozen architecture is therefore the flat dict

    {'normal/op_2_0': 'sep_conv_3x3', 'normal/input_2_0': [0], ..., 'reduce/input_5_1': [1]}

exactly as `DARTS.load_searched_model('darts-v2')` spells it (nni/nas/hub/pytorch/nasnet.py). An input is a
one-element list because `n_chosen=1` makes it a `CategoricalMultiple`; a bare int is accepted on reading.
Our pair 2(i-2)+k `(op, j)` is NNI's `op_{i}_{k}` = op, `input_{i}_{k}` = [j]. NNI's DARTS cell always
concatenates every node (`merge_op='all'`), so a genotype with another concat has no NNI equivalent.
A space searched with a choice of width or depth adds `width` / `depth` keys; they are kept in `meta`.

NNI's NAS-Bench-201 space (`nni.nas.hub.pytorch.NasBench201`) builds every cell from one `NasBench201Cell(
label='cell')`, whose edge i -> j is a `LayerChoice` labelled `{i}_{j}` (nni/nas/hub/pytorch/modules/
nasbench201.py), so its dict is {'cell/0_1': 'conv_3x3', 'cell/0_2': ..., 'cell/2_3': ...}. NNI spells two ops
differently from the benchmark (`conv_3x3` / `conv_1x1` for `nor_conv_3x3` / `nor_conv_1x1`); they are
translated here and only here.
"""
from __future__ import annotations

import re
from typing import Any

from ssnas.errors import UserError

CELLS = ("normal", "reduce")
# NNI's DARTS.DARTS_OPS: DARTS's primitives without 'none' (NNI handles 'none' inside the differentiable cell)
NNI_DARTS_OPS = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
                 "dil_conv_3x3", "dil_conv_5x5")
# keys NNI adds when the space's width or number of cells was itself a choice (nasnet.py: nni.choice('width'|'depth'))
SPACE_KEYS = ("width", "depth")
_LABEL = re.compile(r"^(normal|reduce)/(op|input)_(\d+)_(\d+)$")
# NNI's NasBench201 PRIMITIVES, by the benchmark's (our) op name
NB201_TO_NNI = {"none": "none", "skip_connect": "skip_connect", "nor_conv_1x1": "conv_1x1",
                "nor_conv_3x3": "conv_3x3", "avg_pool_3x3": "avg_pool_3x3"}
NNI_TO_NB201 = {v: k for k, v in NB201_TO_NNI.items()}
NB201_CELL = "cell"


def is_nni_dict(data: Any) -> bool:
    """True for a flat NNI architecture dict ('<cell>/<choice>' keys), from any NNI space; False for our own
    genotype JSON. Which space it belongs to is checked by `from_nni_dict`."""
    if not isinstance(data, dict) or not data or {"space", *CELLS} & set(data):
        return False
    keys = [k for k in data if k not in SPACE_KEYS]
    return bool(keys) and all(isinstance(k, str) and "/" in k for k in keys)


def _nb201_labels() -> list[tuple[str, int]]:
    """(NNI label, our edge index) of the 6 edges, in NNI's creation order (which is also ours)."""
    from ssnas.search_spaces.nb201 import EDGES

    return [(f"{NB201_CELL}/{i}_{j}", k) for k, (i, j) in enumerate(EDGES)]


def is_nb201_dict(data: Any) -> bool:
    """True for an NNI dict whose keys are all NasBench201 cell labels ('cell/<i>_<j>')."""
    return is_nni_dict(data) and all(isinstance(k, str) and k.startswith(f"{NB201_CELL}/") for k in data)


def to_nni_nb201_dict(genotype: Any) -> dict[str, str]:
    """The dict that freezes NNI's NasBench201 space into a NAS-Bench-201 genotype."""
    return {label: NB201_TO_NNI[genotype.edges[k]] for label, k in _nb201_labels()}


def from_nni_nb201_dict(data: Any, source: str = "NNI dict") -> Any:
    """An NB201Genotype from NNI's NasBench201 dict; every problem is a one-line UserError naming the key."""
    from ssnas.search_spaces.nb201 import NB201Genotype

    labels = _nb201_labels()
    known = {label for label, _ in labels}
    for key in data:
        if key not in known:
            raise UserError(f"{source}: key {key!r} is not an edge of NNI's NasBench201 cell; its edges are "
                            f"{', '.join(sorted(known))}")
    ops = [""] * len(labels)
    for label, k in labels:
        if label not in data:
            raise UserError(f"{source}: field {label!r} is missing; a NAS-Bench-201 cell needs all 6 edges "
                            f"({', '.join(label for label, _ in labels)})")
        op = data[label]
        if op not in NNI_TO_NB201:
            raise UserError(f"{source}: field {label!r} is {op!r}, not an op of NNI's NasBench201 space; use one "
                            f"of {', '.join(NNI_TO_NB201)}")
        ops[k] = NNI_TO_NB201[op]
    return NB201Genotype(tuple(ops))


def to_nni_dict(genotype: Any) -> dict[str, Any]:
    """The dict that freezes NNI's space into `genotype`: its DARTS space (keys in NNI's own order), or its
    NasBench201 space for a NAS-Bench-201 genotype."""
    if getattr(genotype, "space", None) == "nb201" and hasattr(genotype, "edges"):
        return to_nni_nb201_dict(genotype)
    if getattr(genotype, "space", None) != "darts":
        raise UserError(f"--to nni writes NNI's DARTS space; a {getattr(genotype, 'space', '?')!r} genotype has "
                        f"no DARTS-space dict")
    out: dict[str, Any] = {}
    for cell in CELLS:
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


def _input(value: Any, key: str, node: int, where: str) -> int:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{where}: field {key!r} must be one input index such as [0], got {value!r}")
    if not 0 <= value < node:
        raise UserError(f"{where}: field {key!r} is {value}, out of range for node {node} (must be 0..{node - 1})")
    return value


def from_nni_dict(data: Any, source: str = "NNI dict") -> Any:
    """A DartsGenotype from NNI's DARTS-space dict; every problem is a one-line UserError naming the key."""
    from ssnas.search_spaces.darts import DartsGenotype

    if not isinstance(data, dict):
        raise UserError(f"{source}: expected an NNI architecture dict, got {type(data).__name__}")
    found: dict[str, dict[tuple[str, int, int], Any]] = {c: {} for c in CELLS}
    meta: dict[str, Any] = {}
    for key, value in data.items():
        if key in SPACE_KEYS:
            meta[key] = value
            continue
        m = _LABEL.match(key) if isinstance(key, str) else None
        if m is None:
            raise UserError(f"{source}: key {key!r} is not a label of NNI's DARTS space ('normal|reduce/op|input_"
                            f"<node>_<0|1>'); is this dict from another NNI space?")
        cell, kind, node, slot = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
        if slot not in (0, 1) or node < 2:
            raise UserError(f"{source}: key {key!r} names node {node}, slot {slot}; DARTS nodes are 2, 3, ... with "
                            f"slots 0 and 1")
        found[cell][(kind, node, slot)] = value
    for cell in CELLS:
        if not found[cell]:
            raise UserError(f"{source}: field '{cell}/op_2_0' is missing; a DARTS architecture needs both a "
                            f"normal and a reduce cell")
    nodes = max(node for cell in CELLS for (_, node, _) in found[cell]) - 1
    cells: dict[str, list[list[Any]]] = {}
    for cell in CELLS:
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
                pairs.append([op, _input(found[cell][("input", i, k)], in_key, i, source)])
        cells[cell] = pairs
    concat = list(range(2, 2 + nodes))
    genotype = DartsGenotype.from_json({"normal": cells["normal"], "normal_concat": concat,
                                        "reduce": cells["reduce"], "reduce_concat": concat}, source)
    if meta:
        genotype.meta.update({"nni": meta})
    return genotype


def parse_genotype(data: Any, source: str, space: str | None = None) -> Any:
    """`ssnas.genotypes.load_genotype`'s format hook: a genotype if `data` is an NNI dict, else None."""
    if not is_nni_dict(data):
        return None
    if is_nb201_dict(data) and space in (None, "nb201"):
        return from_nni_nb201_dict(data, source)
    if space not in (None, "darts"):
        raise UserError(f"{source} is an NNI DARTS-space dict, not a {space!r} genotype; drop --space or pass "
                        f"a {space} genotype")
    return from_nni_dict(data, source)
