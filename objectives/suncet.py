"""SuNCEt: SimCLR plus a supervised noise-contrastive term on a few labelled images (Assran, Ballas, Castrejon,
Rabbat, "Recovering Petaflops in Contrastive Semi-Supervised Learning of Visual Representations", arXiv
2006.10803; code facebookresearch/suncet).

The only self-supervised objective that reads labels, and only the class-balanced `--labels-fraction` the engine
leaves visible (every other label arrives as -1). For each labelled embedding z_i among the labelled set S,

    l_i = -log( sum_{j in S, j != i, y_j = y_i} exp(sim(z_i, z_j)/t) / sum_{k in S, k != i} exp(sim(z_i, z_k)/t) )

(src/losses.py `init_suncet_loss`: the softmax over the other labelled embeddings, summed per class, scored on the
true class), averaged over S; the total is NT-Xent + weight * SuNCEt with weight 1 (src/train.py:
`loss = sloss + uloss`). The reference draws a separate class-balanced labelled batch; here S is the labelled
images of the ordinary batch, both views of each, so every labelled anchor has at least its other view as a
positive. A batch with no labelled image contributes 0 (the logged `labelled` count shows how often that happens).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ssnas.objectives.simclr import nt_xent
from ssnas.runs.distributed import SINGLE, Ranks
from ssnas.training.objective import Batch, Objective, at_least_float32, projection_head


def suncet_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float, ranks: Ranks = SINGLE) -> torch.Tensor:
    """The SuNCEt term over the labelled rows of z [M, D] (labels [M], -1 = unlabelled): each labelled anchor
    against every other labelled embedding. Anchors without any positive (a class seen once) are left out of the
    mean, and a batch without any positive gives 0.

    Under torchrun the labelled set is the global batch's: embeddings (with gradients) and labels are gathered from
    every rank, this rank's labelled rows are the anchors, and the result is this rank's share: the sum over its
    anchors divided by the global number of anchors, times the number of ranks (the ranks may hold different numbers
    of labelled images), so that the mean over the ranks is the loss of one process on the global batch.
    """
    z = F.normalize(at_least_float32(z), dim=1)
    every, every_labels = ranks.gather(z), ranks.gather_data(labels)
    own = torch.arange(z.shape[0], device=z.device) + ranks.rank * z.shape[0]  # each anchor's own column
    logits = z @ every.t() / temperature
    labelled = every_labels >= 0
    not_self = torch.ones_like(logits, dtype=torch.bool).index_put_(
        (torch.arange(z.shape[0], device=z.device), own), torch.tensor(False, device=z.device))
    candidates = labelled.view(1, -1) & not_self  # j in S, j != i
    same = candidates & (labels.view(-1, 1) == every_labels.view(1, -1))
    has_pos = (labels >= 0) & same.any(dim=1)
    anchors = ranks.all_reduce_sum(has_pos.sum().to(z.dtype).view(1)).detach()
    if float(anchors) == 0:
        return z.sum() * 0.0  # keeps the graph (and the device) without a term
    # rows without a positive are dropped before the logsumexp: an all -inf row would give NaN gradients
    logits, candidates, same = logits[has_pos], candidates[has_pos], same[has_pos]
    log_all = torch.logsumexp(logits.masked_fill(~candidates, float("-inf")), dim=1)
    log_pos = torch.logsumexp(logits.masked_fill(~same, float("-inf")), dim=1)
    return -(log_pos - log_all).sum() * (ranks.world / anchors[0])


@dataclass
class SuNCEtOptions:
    suncet_weight: float = field(default=1.0, metadata={"range": "[0, 1000]"})  # src/train.py adds the two losses unweighted


class SuNCEt(Objective):
    name = "suncet"
    labels = "fraction"
    Options = SuNCEtOptions
    uses = frozenset({"temperature", "proj_dim", "proj_hidden_dim", "labels_fraction"})

    def __init__(self, cfg, feature_dim: int, num_classes: int = 0):
        super().__init__(cfg, feature_dim, num_classes)
        self.head: nn.Module = projection_head(feature_dim, cfg.proj_hidden_dim, cfg.proj_dim)

    def forward(self, encoder: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        t = self.cfg.temperature
        z1, z2 = self.head(encoder(torch.cat(batch.views[:2]))).chunk(2)
        unsupervised = nt_xent(z1, z2, t, batch.ranks)
        labels = batch.labels if batch.labels is not None else torch.full_like(batch.index, -1)
        known = labels >= 0
        supervised = suncet_loss(torch.cat([z1, z2]), torch.cat([labels, labels]), t, batch.ranks)
        loss = unsupervised + self.opts.suncet_weight * supervised
        return {"loss": loss, "nt_xent": unsupervised.detach(), "suncet": supervised.detach(),
                "labelled": known.sum().float()}

    def embed(self, encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(encoder(x)), dim=1)
