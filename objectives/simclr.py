"""SimCLR (Chen, Kornblith, Norouzi, Hinton, ICML 2020): NT-Xent over 2N views, through a projection head."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssnas.training.objective import Batch, Objective, projection_head


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """The normalized temperature-scaled cross-entropy loss (SimCLR Sec. 2.1, Eq. 1 and Algorithm 1).

    For each of the 2N views k, with its positive p(k) (the other view of the same image):
        l(k) = -log exp(sim(z_k, z_p(k)) / t) / sum_{m != k} exp(sim(z_k, z_m) / t)
    averaged over all 2N views; sim is the cosine similarity.
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    logits = z @ z.t() / temperature
    logits.fill_diagonal_(float("-inf"))  # a view is not its own negative (the 1[k != i] in Eq. 1)
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, positives)


class SimCLR(Objective):
    name = "simclr"
    uses = frozenset({"temperature", "proj_dim", "proj_hidden_dim"})

    def __init__(self, cfg, feature_dim: int, num_classes: int = 0):
        super().__init__(cfg, feature_dim, num_classes)
        self.head: nn.Module = projection_head(feature_dim, cfg.proj_hidden_dim, cfg.proj_dim)

    def forward(self, encoder: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        # One encoder pass over both views: BN sees the 2N batch, as SimCLR's (global) BN does.
        h = encoder(torch.cat(batch.views[:2]))
        z1, z2 = self.head(h).chunk(2)
        loss = nt_xent(z1, z2, self.cfg.temperature)
        return {"loss": loss, "nt_xent": loss.detach()}

    def embed(self, encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(encoder(x)), dim=1)
