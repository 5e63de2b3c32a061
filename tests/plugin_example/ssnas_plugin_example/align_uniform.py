"""Alignment and uniformity on the hypersphere (Wang & Isola, ICML 2020): L_align + lambda L_uniform."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ssnas.config import Tunable
from ssnas.training.objective import Batch, Objective, projection_head


@dataclass
class AlignUniformOptions:
    alpha: float = field(default=2.0, metadata={"range": "(0, 10]"})  # exponent of the alignment distance (paper: 2)
    t: float = field(default=2.0, metadata={"range": "(0, 100]"})  # uniformity kernel width (paper: 2)
    weight: float = field(default=1.0, metadata={"range": "[0, 100]"})  # lambda: weight of the uniformity term


class AlignUniform(Objective):
    name = "align_uniform"
    Options = AlignUniformOptions
    uses = frozenset({"proj_dim", "proj_hidden_dim"})  # no temperature: it is never tuned here
    tunable = (Tunable("objective.weight", "float", 0.1, 10.0, log=True, why="lambda; the paper sweeps 0.1..10"),)

    def __init__(self, cfg, feature_dim: int, num_classes: int = 0):
        super().__init__(cfg, feature_dim, num_classes)
        self.head = projection_head(feature_dim, cfg.proj_hidden_dim, cfg.proj_dim)

    def forward(self, encoder, batch: Batch) -> dict[str, torch.Tensor]:
        z = F.normalize(self.head(encoder(torch.cat(batch.views[:2]))), dim=1)
        x, y = z.chunk(2)
        align = (x - y).norm(dim=1).pow(self.opts.alpha).mean()
        uniform = sum(torch.pdist(v).pow(2).mul(-self.opts.t).exp().mean().log() for v in (x, y)) / 2
        loss = align + self.opts.weight * uniform
        return {"loss": loss, "align": align.detach(), "uniform": uniform.detach()}
