"""DrNAS (Chen, Wang, Cheng, Tang, Hsieh, ICLR 2021): architecture mixing weights drawn from a Dirichlet.

Each edge's op weights are a sample w ~ Dir(beta) with concentration beta = ELU(alpha) + 1 (Sec. 3.1; the
authors' code, 201-space/search_model.py), drawn anew for every forward pass with the pathwise
(reparameterised) gradient, so the alphas learn a distribution over op choices instead of one point; the
randomness smooths the validation loss landscape and resists the sharp minima behind DARTS's collapse (Sec. 3.2).
The regulariser is weight decay on alpha (the code's default `--reg_type l2 --reg_scale 1e-3`, the same value
as DARTS's architecture weight decay, here `--arch-weight-decay`).

Progressive learning (Sec. 3.3, 201-space/train_search_progressive.py): the search runs in two stages of equal
length; after the first, each edge keeps only its `keep` strongest ops by alpha (5 -> 3 on NAS-Bench-201), and in
each stage the alphas are frozen for the first `warmup` share of the stage (10 of 50 epochs in the code). The
derived cell is the argmax of the Dirichlet mean, i.e. of beta over the alive ops.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from ssnas.strategies.base import SearchTools, Strategy


@dataclass
class DrNASOptions:
    keep: int = field(default=3, metadata={"help": "ops each edge keeps after the first stage (DrNAS NB201: 3 of 5); "
                                                   "0 = no pruning, one stage", "range": "[0, 64]"})
    warmup: float = field(default=0.2, metadata={"help": "share of each stage with the alphas frozen (DrNAS: 10 of 50 "
                                                         "epochs)", "range": "[0, 1)"})


def concentration(alpha: torch.Tensor) -> torch.Tensor:
    """beta = ELU(alpha) + 1 > 0: the Dirichlet concentration of each edge (DrNAS Sec. 3.1)."""
    return F.elu(alpha) + 1.0


def dirichlet_weights(alpha: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """One reparameterised sample w ~ Dir(beta) per edge over its alive ops; removed ops get exactly 0."""
    beta = concentration(alpha)
    sample = torch.distributions.Dirichlet(beta).rsample()
    sample = sample * alive.to(sample.dtype)
    return sample / sample.sum(dim=-1, keepdim=True)


class DrNAS(Strategy):
    name = "drnas"
    summary = ("DrNAS: op weights sampled from Dir(ELU(alpha)+1), two stages, edges pruned to the 3 strongest ops "
               "between them (Chen et al. 2021)")
    Options = DrNASOptions

    @classmethod
    def min_epochs(cls, opts: DrNASOptions) -> int:
        return 2 if opts.keep else 1

    def __init__(self, opts: DrNASOptions, supernet: Any, primitives: list[str], epochs: int):
        super().__init__(opts, supernet, primitives, epochs)
        self.stage_epochs = epochs // 2 if opts.keep else epochs

    def _stage_progress(self, progress: float) -> float:
        """How far into its own stage the search is (0 -> 1); stage 1 is the first `stage_epochs` epochs."""
        boundary = self.stage_epochs / self.epochs
        if progress <= boundary:
            return progress / boundary
        return (progress - boundary) / (1.0 - boundary)

    def wants_arch_step(self, progress: float) -> bool:
        """Alphas are frozen for the first `warmup` share of each stage (the code: `if epoch >= 10: architect.step`)."""
        return self._stage_progress(progress) >= self.opts.warmup

    def op_weights(self, alphas: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {kind: dirichlet_weights(a, self.alive[kind].to(a.device)) for kind, a in alphas.items()}

    def derive_scores(self, alphas: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The Dirichlet mean beta / sum(beta) over the alive ops (removed ops score 0)."""
        out = {}
        for kind, a in alphas.items():
            beta = concentration(a.detach().float().cpu()) * self.alive[kind]
            out[kind] = beta / beta.sum(dim=-1, keepdim=True)
        return out

    def after_epoch(self, epoch: int, tools: SearchTools) -> dict[str, Any]:
        if not self.opts.keep or epoch + 1 != self.stage_epochs:
            return {}
        # end of stage 1: each edge keeps its `keep` strongest ops by alpha (utils.py prune(): topk on raw alpha)
        for kind, a in self.supernet.alphas().items():
            scores = a.detach().float().cpu().masked_fill(~self.alive[kind], float("-inf"))
            keep = min(self.opts.keep, int(self.alive[kind].sum(dim=1).min()))
            top = scores.topk(keep, dim=1).indices
            alive = torch.zeros_like(self.alive[kind])
            alive.scatter_(1, top, True)
            self.alive[kind] = alive & self.alive[kind]
        return {"pruned_to": self.alive_ops()}
