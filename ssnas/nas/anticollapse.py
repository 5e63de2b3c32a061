"""Two guards against DARTS's collapse to parameter-free ops (Zela et al., ICLR 2020), both off by default and
kept as small pieces apart from the search loop, so that a search strategy can take them over.

- DARTS- (Chu et al., ICLR 2021, Sec. 3.2): an auxiliary skip connection beta * x on every stride-1 edge, with
  beta decayed linearly from beta_0 to 0 over the search. The cells add it (`Supernet.aux_skip`); the weight is
  `aux_skip_weight`.
- beta-DARTS (Ye et al., CVPR 2022, Sec. 3.2, Eq. 9): lambda * mean over edges of logsumexp(alpha_edge), the
  smooth-max of each edge's architecture parameters, with lambda ramped linearly over the search (Sec. 4.1).
"""
from __future__ import annotations

from typing import Sequence

import torch


def aux_skip_weight(beta0: float, progress: float) -> float:
    """DARTS-'s beta at `progress` (0 -> 1 over the search): beta0 decayed linearly to 0."""
    return beta0 * (1.0 - progress)


def beta_decay_penalty(alphas: Sequence[torch.Tensor], weight: float, progress: float) -> torch.Tensor | None:
    """beta-DARTS's regulariser at `progress`, or None while its weight is 0. It keeps the alphas from running
    away, which is what lets parameter-free ops take over."""
    scale = weight * progress
    if scale <= 0:
        return None
    return scale * torch.stack([torch.logsumexp(a, dim=-1).mean() for a in alphas]).mean()
