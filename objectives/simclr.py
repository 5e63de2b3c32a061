"""SimCLR (Chen, Kornblith, Norouzi, Hinton, ICML 2020): NT-Xent over 2N views, through a projection head."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssnas.runs.distributed import SINGLE, Ranks
from ssnas.training.objective import Batch, Objective, at_least_float32, projection_head


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float, ranks: Ranks = SINGLE) -> torch.Tensor:
    """The normalized temperature-scaled cross-entropy loss (SimCLR Sec. 2.1, Eq. 1 and Algorithm 1).

    For each of the 2N views k, with its positive p(k) (the other view of the same image):
        l(k) = -log exp(sim(z_k, z_p(k)) / t) / sum_{m != k} exp(sim(z_k, z_m) / t)
    averaged over all 2N views; sim is the cosine similarity.

    Under torchrun the 2N views are every rank's (SimCLR trains on the global batch, Sec. 2 "Training with Large
    Batch Size"): the candidates m are gathered, with gradients, from all ranks, the anchors k are this rank's,
    and the result is the mean over this rank's anchors, whose mean over the ranks is the loss above.
    """
    n = z1.shape[0]
    z = F.normalize(at_least_float32(torch.cat([z1, z2])), dim=1)
    every1, every2 = ranks.gather(z[:n]), ranks.gather(z[n:])
    g, offset = every1.shape[0], ranks.rank * n  # global images; where this rank's rows start
    logits = z @ torch.cat([every1, every2]).t() / temperature
    own = torch.cat([torch.arange(offset, offset + n), torch.arange(g + offset, g + offset + n)]).to(z.device)
    rows = torch.arange(2 * n, device=z.device)
    logits = logits.index_put((rows, own), logits.new_tensor(float("-inf")))  # not its own negative (1[k != i])
    positives = torch.cat([own[n:], own[:n]])
    return F.cross_entropy(logits, positives)


class SimCLR(Objective):
    name = "simclr"
    uses = frozenset({"temperature", "proj_dim", "proj_hidden_dim"})

    def __init__(self, cfg, feature_dim: int, num_classes: int = 0):
        super().__init__(cfg, feature_dim, num_classes)
        self.head: nn.Module = projection_head(feature_dim, cfg.proj_hidden_dim, cfg.proj_dim)

    def forward(self, encoder: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        # One encoder pass over both views: BN sees the 2N batch (with --sync-bn under torchrun, every rank's: SimCLR's
        # global BN).
        h = encoder(torch.cat(batch.views[:2]))
        z1, z2 = self.head(h).chunk(2)
        loss = nt_xent(z1, z2, self.cfg.temperature, batch.ranks)
        return {"loss": loss, "nt_xent": loss.detach()}

    def embed(self, encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(encoder(x)), dim=1)
