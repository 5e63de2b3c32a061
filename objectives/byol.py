"""BYOL: Bootstrap Your Own Latent (Grill et al., NeurIPS 2020).

An online network (encoder, projector, predictor) predicts the target network's projection of another view of the
same image; the target (encoder and projector) is an exponential moving average of the online weights and gets no
gradient. No negatives (Sec. 3.1):

    L(v, v') = || q(v)/|q(v)| - z'(v')/|z'(v')| ||^2 = 2 - 2 cos(q(v), z'(v'))        (Eq. 2)
    L_BYOL = L(v, v') + L(v', v)                                                       (symmetrised, Sec. 3.1)
    xi <- tau xi + (1 - tau) theta,  tau = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2   (Eq. 1; Sec. 3.3)

Projector and predictor are MLPs Linear-BN-ReLU-Linear with hidden 4096 and output 256 in the paper (Sec. 3.3);
here their sizes come from `--proj-hidden-dim` / `--proj-dim` so tiny runs stay tiny. On a supernet the target is
a frozen EMA copy of the whole supernet, alphas included, made in `attach` (see objectives/clsa.py for why).
BYOL's asymmetric augmentations (blur and solarisation probabilities per view, App. B) are not reproduced: both
views come from the shared weak pipeline.

Under torchrun nothing is gathered: the loss is a mean over images, so each rank's mean over its shard is its share
of the global loss; the target is an EMA of parameters that are the same on every rank, so it is too.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ssnas.training.momentum import byol_tau, ema_update_, momentum_copy
from ssnas.training.objective import Batch, Objective, at_least_float32, projection_head


def byol_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """2 - 2 cos(prediction, target), averaged over the batch; the target gets no gradient (BYOL Eq. 2)."""
    p = F.normalize(at_least_float32(prediction), dim=1)
    z = F.normalize(at_least_float32(target.detach()), dim=1)
    return (2.0 - 2.0 * (p * z).sum(dim=1)).mean()


@dataclass
class BYOLOptions:
    tau_base: float = field(default=0.996, metadata={"range": "[0, 1]"})  # BYOL Sec. 3.3: base target decay rate
    # 0 = the projector's hidden width (the paper uses 4096 for both)
    predictor_hidden_dim: int = field(default=0, metadata={"range": "[0, 65536]"})


class BYOL(Objective):
    name = "byol"
    Options = BYOLOptions
    uses = frozenset({"proj_dim", "proj_hidden_dim"})  # no negatives, so no temperature

    def __init__(self, cfg, feature_dim: int, num_classes: int = 0):
        super().__init__(cfg, feature_dim, num_classes)
        hidden = cfg.proj_hidden_dim or feature_dim
        self.projector: nn.Module = projection_head(feature_dim, hidden, cfg.proj_dim)
        self.predictor: nn.Module = projection_head(cfg.proj_dim, self.opts.predictor_hidden_dim or hidden,
                                                    cfg.proj_dim)
        self.target_encoder: nn.Module | None = None
        self.target_projector: nn.Module | None = None
        # Current decay, a buffer so logs and checkpoints show where the schedule stands.
        self.register_buffer("tau", torch.tensor(self.opts.tau_base))

    def attach(self, encoder: nn.Module) -> None:
        self.target_encoder = momentum_copy(encoder)
        self.target_projector = momentum_copy(self.projector)

    def forward(self, encoder: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        if self.target_encoder is None or self.target_projector is None:
            raise RuntimeError("BYOL.attach(encoder) must be called before the first forward")
        # One pass over both views, as objectives/simclr.py does: on a supernet the per-op overhead, not the
        # batch size, sets the cost; BN then normalises over the 2N views together.
        both = torch.cat(batch.views[:2])
        q1, q2 = self.predictor(self.projector(encoder(both))).chunk(2)
        with torch.no_grad():
            z1, z2 = self.target_projector(self.target_encoder(both)).chunk(2)
        loss = byol_loss(q1, z2) + byol_loss(q2, z1)
        return {"loss": loss, "byol": loss.detach(), "tau": self.tau.detach().clone()}

    @torch.no_grad()
    def after_step(self, encoder: nn.Module, progress: float) -> None:
        assert self.target_encoder is not None and self.target_projector is not None
        # The schedule's k/K is the share of training done, `progress`, counted after this step.
        tau = byol_tau(progress, self.opts.tau_base)
        ema_update_(self.target_encoder, encoder, tau)
        ema_update_(self.target_projector, self.projector, tau)
        self.tau.fill_(tau)
