"""i-Mix on SimCLR (Lee, Zhu, Sohn, Li, Shin, Lee, "i-Mix: A Domain-Agnostic Strategy for Contrastive
Representation Learning", ICLR 2021; code kibok90/imix).

Each image i gets a virtual label v_i, its one-hot index in the batch. Anchors are mixed with a random partner
pi(i) of the same batch and so are their virtual labels:

    x~_i = lam_i x_i + (1 - lam_i) x_pi(i),    v~_i = lam_i v_i + (1 - lam_i) v_pi(i),    lam_i ~ Beta(alpha, alpha)

and the N-pair (SimCLR-style, single direction) loss is taken against the unmixed second views,

    L = mean_i [ lam_i CE(s_i / t, i) + (1 - lam_i) CE(s_i / t, pi(i)) ],   s_ij = cos(z(x~_i), z(x'_j))

(builder.py: `mixup` with lam = max(lam, 1 - lam) per sample and a random permutation; the loss line
`lam * criterion(logits, labels) + (1 - lam) * criterion(logits, labels_aux)`). The paper defines i-Mix for the
N-pair loss of SimCLR, for MoCo (where the queue's keys stay unmixed negatives and the batch's own keys join them)
and for BYOL (mixing the cosine targets); `imix_loss` takes any logits whose positives are on the diagonal, so
those variants only need their own logits.

The mix is drawn from a generator seeded by the batch's instance ids and a step counter kept in a buffer, so
calling `forward` twice on one batch (second-order DARTS does) gives the same loss, and resumes are exact.

Under torchrun the mix is the global batch's: the instance ids and the first views of every rank are gathered, the
permutation and the lam's are drawn over all of them (the same on every rank, seeded by all the ids), each rank mixes
its own anchors with partners from any rank, and the candidates are every rank's positives (gathered with
gradients). One process with the global batch computes the same loss.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ssnas.training.objective import Batch, Objective, at_least_float32, batch_seed, projection_head


def imix_loss(logits: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """Cross-entropy against the mixed virtual labels lam_i e_i + (1 - lam_i) e_partner(i); rows = mixed anchors,
    columns = candidates whose column offset + i is anchor i's own positive."""
    log_p = F.log_softmax(at_least_float32(logits), dim=1)
    rows = torch.arange(logits.shape[0], device=logits.device)
    own, other = log_p[rows, rows + offset], log_p[rows, partner]
    return -(lam * own + (1.0 - lam) * other).mean()


def draw_mix(n: int, alpha: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(partner permutation, lam) on the CPU, one lam per sample: lam = max(b, 1 - b), b ~ Beta(alpha, alpha), so
    each anchor's own image dominates its mix (builder.py `mixup`). A private NumPy generator: torch has no
    Beta sampler that takes a generator, and the global random state must stay untouched."""
    rng = np.random.default_rng(seed)
    partner = torch.from_numpy(rng.permutation(n))
    b = torch.from_numpy(rng.beta(alpha, alpha, size=n)).float()
    return partner, torch.maximum(b, 1.0 - b)


@dataclass
class IMixOptions:
    # Beta(alpha, alpha) of the mixing coefficient; i-Mix's default (main_pretext.py --alpha)
    alpha: float = field(default=1.0, metadata={"range": "(0, 1000]"})


class IMix(Objective):
    name = "imix"
    Options = IMixOptions
    uses = frozenset({"temperature", "proj_dim", "proj_hidden_dim"})

    def __init__(self, cfg, feature_dim: int, num_classes: int = 0):
        super().__init__(cfg, feature_dim, num_classes)
        self.head: nn.Module = projection_head(feature_dim, cfg.proj_hidden_dim, cfg.proj_dim)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def forward(self, encoder: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        n, ranks = batch.size, batch.ranks
        every_index = ranks.gather_data(batch.index)  # the global batch (this rank's ids alone for one process)
        # same batch, same mix
        partner, lam = draw_mix(every_index.numel(), self.opts.alpha, batch_seed(every_index, int(self.step)))
        rows = ranks.rows(every_index.numel())
        x, x_pos = batch.views[0], batch.views[1]
        partner_d, lam_d = partner[rows].to(x.device), lam[rows].to(x.device, x.dtype)
        mixed = lam_d.view(-1, 1, 1, 1) * x + (1.0 - lam_d.view(-1, 1, 1, 1)) * ranks.gather_data(x)[partner_d]
        # one encoder pass over anchors and positives (builder.py: `im_q = torch.cat([im_q, im_k])` for npair)
        z = F.normalize(self.head(encoder(torch.cat([mixed, x_pos]))), dim=1)
        q, k = z[:n], ranks.gather(z[n:])
        loss = imix_loss(q @ k.t() / self.cfg.temperature, partner_d, at_least_float32(lam_d), batch.offset)
        return {"loss": loss, "imix": loss.detach(), "lam_mean": lam_d.float().mean().detach()}

    @torch.no_grad()
    def after_step(self, encoder: nn.Module, progress: float) -> None:
        self.step += 1

    def embed(self, encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(encoder(x)), dim=1)
