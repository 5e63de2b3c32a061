"""DARTS- (Chu, Wang, Zhang, Li, Li, Wei, Yan, ICLR 2021): an auxiliary skip connection beside every mixed op.

Each stride-1 edge computes o_bar(x) + beta * x (Sec. 3.2, Eq. 5). The skip op's unfair advantage in the
supernet (it eases optimisation, so its alpha grows whatever its value to the final network) is taken by the
auxiliary skip instead, which decays linearly from beta_0 = 1 to 0 over the search (scripts/run_darts_minus.sh:
--auxiliary_skip --skip_beta 1 --decay linear), so the derived cell no longer relies on it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ssnas.strategies.base import Strategy


@dataclass
class DartsMinusOptions:
    beta0: float = field(default=1.0, metadata={"help": "weight of the auxiliary skip at the start, decayed linearly "
                                                        "to 0 (DARTS-: 1)", "range": "[0, 100]"})


def auxiliary_skip_weight(beta0: float, progress: float) -> float:
    """DARTS-'s beta at `progress` (0 -> 1 over the search): beta_0 decayed linearly to 0."""
    return beta0 * (1.0 - progress)


class DartsMinus(Strategy):
    name = "darts-minus"
    summary = "DARTS-: an auxiliary skip beta*x beside every stride-1 mixed op, beta 1 -> 0 (Chu et al. 2021)"
    Options = DartsMinusOptions

    def before_step(self, supernet: nn.Module, progress: float) -> None:
        supernet.aux_skip = auxiliary_skip_weight(self.opts.beta0, progress)
