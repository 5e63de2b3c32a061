"""Search-quality numbers logged every epoch: how decided the alphas are, and whether the cell is collapsing
towards parameter-free ops (the failure mode reported for DARTS by Zela et al., ICLR 2020, "Understanding
and Robustifying DARTS", and Chu et al., ICLR 2021, "DARTS-")."""
from __future__ import annotations

import math
from typing import Any, Mapping

from ssnas.nas.genotype import genotype_ops


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
