"""Alignment and uniformity on the hypersphere (Wang & Isola, ICML 2020): L_align + lambda L_uniform."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ssnas.config import Tunable
from ssnas.errors import UserError
from ssnas.training.objective import Batch, Objective, projection_head


@dataclass
class AlignUniformOptions:
    alpha: float = 2.0  # exponent of the alignment distance (paper default)
    t: float = 2.0  # uniformity kernel width (paper default)
    weight: float = 1.0  # lambda: weight of the uniformity term


class AlignUniform(Objective):
    name = "align_uniform"
    Options = AlignUniformOptions
    uses = frozenset({"proj_dim", "proj_hidden_dim"})  # no temperature: it is never validated nor tuned here
    tunable = (Tunable("objective.weight", "float", 0.1, 10.0, log=True, why="lambda; the paper sweeps 0.1..10"),)

    @classmethod
    def check_options(cls, opts: AlignUniformOptions) -> None:
        if opts.alpha <= 0 or opts.t <= 0 or opts.weight < 0:
            raise UserError(f"align_uniform options: alpha > 0, t > 0 and weight >= 0 are required; got {opts}")

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
