"""Early stopping of a search once its derived cell has settled (DARTS+, Liang et al. 2019, arXiv:1909.06035,
Sec. 3.3).

DARTS+ observes that a differentiable search degrades the longer it runs (the collapse) and stops it "when the
ranking of architecture parameters for learnable operations becomes stable for a determined number of epochs",
10 of a 50-epoch schedule in the paper. ssnas applies the rule to what the search hands over, the derived cell:
the search stops after the epoch at which the genotype has come out the same `patience` epochs running, i.e.
after `patience + 1` equal derivations in a row. The rule reads only the per-epoch genotypes, never a benchmark,
and stopping does not alter the schedule (the cosine and the strategy's ramps are still laid out over the
configured epochs), so an early-stopped run is exactly the first epochs of the full run.
"""
from __future__ import annotations

from typing import Any, Sequence


def unchanged_epochs(genotypes: Sequence[Any]) -> int:
    """How many epochs the last genotype has stayed the same: 0 after a change (or the first epoch), 1 when the
    last two derivations agree, and so on."""
    count = 0
    for before, after in zip(reversed(genotypes[:-1]), reversed(genotypes[1:])):
        if before != after:
            break
        count += 1
    return count


def settled(genotypes: Sequence[Any], patience: int) -> bool:
    """True when the search should stop: a patience of 0 never stops early."""
    return patience > 0 and unchanged_epochs(genotypes) >= patience
