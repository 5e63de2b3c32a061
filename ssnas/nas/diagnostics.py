"""Search-quality numbers logged every epoch: how decided the alphas are, how far the derived cell is from
another one, and whether the cell is collapsing towards parameter-free ops (the failure mode reported for DARTS
by Zela et al., ICLR 2020, "Understanding and Robustifying DARTS", and Chu et al., ICLR 2021, "DARTS-").

Margins: the derivation ranks scores (DARTS: softmax(alpha), Sec. 2.4). On each edge the genotype keeps, the op
margin is the chosen op's score minus the best score of the other ops the derivation may choose; where the
derivation also picks edges (DARTS keeps 2 inputs per node), the edge margin is the weakest kept edge's strength
minus the strongest dropped one's. A margin near 0 means a slightly different run would have derived another
cell: the genotype is then close to a random pick.
"""
from __future__ import annotations

import math
import statistics
from typing import Any, Callable, Mapping

import torch

from ssnas.nas.genotype import genotype_ops

# Below this op margin (median over the kept edges) or above this normalised entropy, a derived cell is
# undecided: softmax weights 1e-3 apart over 5-8 ops are what 1e-3-scale alpha noise gives.
TINY_MARGIN = 1e-3
UNIFORM_ENTROPY = 0.99


def edge_entropy(row: Mapping[str, float]) -> float:
    """Shannon entropy (nats) of one edge's op distribution; log(#ops) when uniform, 0 when decided."""
    return -sum(p * math.log(p) for p in row.values() if p > 0)


def search_diagnostics(probs: Mapping[str, Mapping[str, Mapping[str, float]]], genotype: Any,
                       parameter_free: frozenset[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for kind, edges in probs.items():
        entropies = [edge_entropy(row) for row in edges.values()]
        out[f"entropy_{kind}"] = sum(entropies) / len(entropies)
        # normalised by the uniform distribution's entropy, so spaces with different op counts compare
        n_ops = len(next(iter(edges.values())))
        out[f"entropy_{kind}_norm"] = out[f"entropy_{kind}"] / math.log(n_ops)
    ops = genotype_ops(genotype)
    out["parameter_free_share"] = sum(op in parameter_free for op in ops) / len(ops)
    return out


def eligible_ops(derive: Callable[[Mapping[str, torch.Tensor]], Any], shapes: Mapping[str, tuple[int, int]],
                 primitives: list[str]) -> set[str]:
    """The ops the derivation can choose at all (DARTS never chooses `none`; NAS-Bench-201 can): op o is
    eligible when scores that favour o on every edge derive a genotype holding o."""
    out = set()
    for o, op in enumerate(primitives):
        scores = {kind: torch.zeros(shape) for kind, shape in shapes.items()}
        for tensor in scores.values():
            tensor[:, o] = 1.0
        if op in genotype_ops(derive(scores)):
            out.add(op)
    return out


def derivation_margins(scores: Mapping[str, torch.Tensor], genotype: Any,
                       derive: Callable[[Mapping[str, torch.Tensor]], Any], primitives: list[str],
                       edge_names: list[str]) -> dict[str, float]:
    """Op margins (min and median over every kept edge) and, where edges are chosen, the smallest edge margin;
    see the module docstring. `scores` are what the derivation ranked (`Supernet.derive_scores()`), rows named by
    `edge_names` ('j->i', states numbered as the genotype's cells())."""
    eligible = eligible_ops(derive, {k: tuple(v.shape) for k, v in scores.items()}, primitives)
    columns = [o for o, op in enumerate(primitives) if op in eligible]
    op_margins, edge_margins = [], []
    for kind, cell in genotype.cells().items():
        rows = scores[kind].detach().float().cpu().tolist()
        row_of = {name: rows[r] for r, name in enumerate(edge_names)}
        strength = {name: max(row[o] for o in columns) for name, row in row_of.items()}
        kept: dict[int, set[str]] = {}
        for e in cell.edges:
            name = f"{e.source}->{e.target}"
            row = row_of[name]
            chosen = primitives.index(e.op)
            rival = max((row[o] for o in columns if o != chosen), default=-math.inf)
            op_margins.append(row[chosen] - rival)
            kept.setdefault(e.target, set()).add(name)
        for target, names in kept.items():
            dropped = [strength[n] for n in row_of if n.endswith(f"->{target}") and n not in names]
            if dropped:
                edge_margins.append(min(strength[n] for n in names) - max(dropped))
    out = {"op_margin_min": min(op_margins), "op_margin_median": statistics.median(op_margins)}
    if edge_margins:
        out["edge_margin_min"] = min(edge_margins)
    return out


def undecided_warning(stats: Mapping[str, Any]) -> str | None:
    """A warning when a search's last epoch derived a cell that rests on tiny margins or near-uniform alphas
    (what `ssnas search` prints at its end and `ssnas show RUN` repeats), else None."""
    entropies = [v for k, v in stats.items() if k.startswith("entropy_") and k.endswith("_norm")]
    entropy = max(entropies, default=0.0)
    median = stats.get("op_margin_median")
    if entropy <= UNIFORM_ENTROPY and (median is None or median >= TINY_MARGIN):
        return None
    words = [f"alpha entropy {entropy:.3f} of uniform"]
    if median is not None:
        words.append(f"chosen ops lead their runners-up by {median:.2g} (median over the kept edges; smallest "
                     f"{stats['op_margin_min']:.2g})")
    if "edge_margin_min" in stats:
        words.append(f"the closest edge choice by {stats['edge_margin_min']:.2g}")
    return (f"the derived cell is barely decided: {', '.join(words)}. Another seed would likely derive another "
            f"cell. Search longer (--epochs), with a larger --arch-lr, or with another strategy before "
            f"retraining it")


def changed_edges(before: Any, after: Any) -> tuple[int, int]:
    """(edges of `after` that `before` does not have, all edges of `after`), counted over every cell."""
    changed = total = 0
    old = before.cells() if before is not None else {}
    for kind, cell in after.cells().items():
        previous = list(old[kind].edges) if kind in old else []
        for e in cell.edges:
            total += 1
            if e in previous:
                previous.remove(e)
            else:
                changed += 1
    return changed, total
