"""beta-DARTS (Ye, Li, Cai, Chen, Li, CVPR 2022): Beta-Decay regularisation of the architecture parameters.

The architecture step minimises L_val + lambda * L_beta with (Sec. 3.2, Eq. 9)

    L_beta = mean over edges e of logsumexp_o(alpha_{e,o}),

the smooth maximum of each edge's alphas. Its gradient, lambda * softmax(alpha_e) / |E|, pulls every alpha down in
proportion to its own weight, so no op's alpha runs away early (which is how parameter-free ops take over) and
the ranking stays decided by the loss. lambda grows linearly over the search; the authors' code uses
lambda = 50 * epoch / 100 over 100 epochs (optimizers/darts/architect.py), i.e. about 50 at the end, which is
this strategy's default `weight` (lambda at the end of the search, whatever its length).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ssnas.strategies.base import Strategy, linear_ramp


@dataclass
class BetaDartsOptions:
    weight: float = field(default=50.0, metadata={
        "help": "lambda at the end of the search, ramped linearly from 0 (beta-DARTS code: ~50 after 100 epochs)",
        "range": "[0, 1e6]"})


def beta_decay_loss(alphas: list[torch.Tensor]) -> torch.Tensor:
    """L_beta = mean over every edge of every cell of logsumexp over its ops (beta-DARTS Eq. 9)."""
    return torch.cat([torch.logsumexp(a, dim=-1) for a in alphas]).mean()


def ramped_beta_decay(alphas: list[torch.Tensor], final: float, progress: float) -> torch.Tensor | None:
    """lambda * L_beta with lambda ramped linearly from 0 to `final` over the search; None while lambda is 0."""
    weight = linear_ramp(final, progress)
    return weight * beta_decay_loss(alphas) if weight > 0 else None


class BetaDarts(Strategy):
    name = "beta-darts"
    summary = "beta-DARTS: + lambda * mean logsumexp(alpha) on the arch step, lambda ramped to 50 (Ye et al. 2022)"
    Options = BetaDartsOptions

    def penalty(self, alphas: list[torch.Tensor], progress: float) -> torch.Tensor | None:
        return ramped_beta_decay(alphas, self.opts.weight, progress)
