"""CLSA: Contrastive Learning with Stronger Augmentations (Wang & Qi, arXiv 2104.07713; code
maple-research-lab/CLSA, summarised in papers.md Sec. 4).

MoCo v2 underneath: a query encoder trained by gradient, a momentum (key) encoder and a FIFO queue of keys. The
weak query is trained with InfoNCE against its key, the other keys of the batch and the queue; a strongly
augmented query is trained with DDM, the cross-entropy from the weak query's distribution over that same bank
(the target, no gradient) to the strong query's:

    L = InfoNCE(q_w; [k, queue], T) + beta * DDM,
    DDM = -mean_i sum_j softmax(q_w . bank / T2)_ij * log softmax(q_s . bank / T2)_ij

(model/CLSA.py builds both distributions, training/train.py the sum; `# DDM loss`).

The momentum encoder on a supernet: `attach` deep-copies the whole supernet, architecture parameters included,
and the EMA runs over all its parameters and buffers. The keys then come from a slowly moving average of the
whole online network, which is MoCo's theta_k <- m theta_k + (1 - m) theta_q applied to all of theta_q; a key
encoder that jumped to each new alpha at once would make the queued keys less consistent with each other, the
property MoCo's momentum exists to protect (MoCo Sec. 3.2). The copy is frozen (`requires_grad=False`), so neither
the weight nor the architecture optimiser sees it, and it lives in this module's `state_dict` for exact resumes.

Under torchrun, as in CLSA's and MoCo's code, the bank holds every rank's keys (`concat_all_gather`) and the queue
takes all of them, so every rank keeps the same queue; the key encoder is an EMA of parameters that are the same on
every rank. MoCo's shuffling BN is not reproduced: the key encoder's BN sees this rank's batch, or with --sync-bn
the global one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ssnas.config import Tunable
from ssnas.data.strong_augment import FIXMATCH_POOL, StrongAugment, StrongViewMaker, validate_strong
from ssnas.training.momentum import KeyQueue, ema_update_, momentum_copy
from ssnas.training.objective import Batch, Objective, ViewSpec, at_least_float32, projection_head


def info_nce(logits: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """Cross-entropy with the positive of row i at column offset + i (the query's own key; CLSA's labels =
    arange(N), shifted to this rank's keys among the gathered ones)."""
    return F.cross_entropy(logits, torch.arange(offset, offset + logits.shape[0], device=logits.device))


def ddm_loss(weak_logits: torch.Tensor, strong_logits: torch.Tensor) -> torch.Tensor:
    """Distributional divergence minimisation: -mean_i sum_j p_weak[i, j] log p_strong[i, j].

    Both inputs are similarities over the same bank already divided by the DDM temperature T2; the weak
    distribution is the target and gets no gradient (CLSA model/CLSA.py: `labels0 = logits.clone().detach()`).
    """
    target = F.softmax(at_least_float32(weak_logits.detach()), dim=1)
    return -(target * F.log_softmax(at_least_float32(strong_logits), dim=1)).sum(dim=1).mean()


@dataclass
class CLSAOptions:
    """Defaults: CLSA's ops/argparser.py (ImageNet, ResNet-50); see experiments/darts_cifar10_clsa.toml for CIFAR."""

    queue_size: int = field(default=65536, metadata={"range": "[1, 1048576]"})  # moco_k: negatives in the bank
    momentum: float = field(default=0.999, metadata={"range": "[0, 1]"})  # moco_m: key encoder EMA
    ddm_weight: float = field(default=1.0, metadata={"range": "[0, 1000]"})  # --alpha: beta, the weight of DDM
    ddm_temperature: float = field(default=0.2, metadata={"range": "(0, 100]"})  # --clsa_t: T2
    aug_times: int = field(default=5, metadata={"range": "[0, 64]"})  # --aug_times: strong ops drawn per image
    magnitude: int = field(default=10, metadata={"range": "[2, 10]"})  # RandAugment(n, m=10): levels 1..m-1
    strong_views: int = field(default=1, metadata={"range": "[0, 16]"})  # single-crop CLSA: one strong view per image
    strong_ops: list[str] = field(default_factory=lambda: list(FIXMATCH_POOL))


class CLSA(Objective):
    name = "clsa"
    Options = CLSAOptions
    uses = frozenset({"temperature", "proj_dim", "proj_hidden_dim"})
    tunable = (
        Tunable("objective.aug_times", "int", 1, 8, why="CLSA strong ops per image; reference --aug_times 5"),
        Tunable("objective.magnitude", "int", 2, 10,
                why="CLSA RandAugment magnitude m (levels 1..m-1); reference 10, valid 2..10"),
    )

    @classmethod
    def check_options(cls, o: CLSAOptions) -> None:
        validate_strong(o.strong_ops, o.aug_times, o.magnitude)  # the ops by name (the numbers have ranges)

    def __init__(self, cfg, feature_dim: int, num_classes: int = 0):
        super().__init__(cfg, feature_dim, num_classes)
        o = self.opts
        self.head: nn.Module = projection_head(feature_dim, cfg.proj_hidden_dim, cfg.proj_dim)
        self.queue = KeyQueue(o.queue_size, cfg.proj_dim)
        self.key_encoder: nn.Module | None = None
        self.key_head: nn.Module | None = None
        # keys of the latest training forward, enqueued by after_step; a cache, not state (never checkpointed:
        # every step sets it in forward and after_step consumes it)
        self._pending_keys: torch.Tensor | None = None

    def view_spec(self) -> ViewSpec:
        return ViewSpec(weak=2, strong=self.opts.strong_views)

    def strong_view_maker(self, weak):
        o = self.opts
        return StrongViewMaker(weak, StrongAugment(o.strong_ops, o.aug_times, o.magnitude))

    def attach(self, encoder: nn.Module) -> None:
        self.key_encoder = momentum_copy(encoder)
        self.key_head = momentum_copy(self.head)

    def embed(self, encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The query q = normalize(g(f(x))) (MoCo's encoder_q output)."""
        return F.normalize(self.head(encoder(x)), dim=1)

    def forward(self, encoder: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        if self.key_encoder is None or self.key_head is None:
            raise RuntimeError("CLSA.attach(encoder) must be called before the first forward")
        t, t2 = self.cfg.temperature, self.opts.ddm_temperature
        with torch.no_grad():  # keys: no gradient (MoCo Algorithm 1, k.detach())
            k = F.normalize(self.key_head(self.key_encoder(batch.views[1])), dim=1)
            k = batch.ranks.gather_data(k)  # every rank's keys (the global batch's)
        # The bank: this batch's keys, then the queue (CLSA: [q . k_allgather^T, q . queue], N x (N + K)).
        bank = torch.cat([k, self.queue.keys.to(k.dtype)])
        q = self.embed(encoder, batch.views[0])
        sims = q @ bank.t()
        contrastive = info_nce(sims / t, batch.offset)
        ddm = sims.new_zeros(())
        # Each strong view through the encoder on its own, as the reference does (BN sees weak and strong
        # batches separately).
        for strong in batch.strong:
            q_s = self.embed(encoder, strong)
            ddm = ddm + ddm_loss(sims / t2, (q_s @ bank.t()) / t2)
        if self.training:
            self._pending_keys = k
        loss = contrastive + self.opts.ddm_weight * ddm
        return {"loss": loss, "contrastive": contrastive.detach(), "ddm": ddm.detach()}

    @torch.no_grad()
    def after_step(self, encoder: nn.Module, progress: float) -> None:
        assert self.key_encoder is not None and self.key_head is not None
        ema_update_(self.key_encoder, encoder, self.opts.momentum)
        ema_update_(self.key_head, self.head, self.opts.momentum)
        if self._pending_keys is not None:
            self.queue.push(self._pending_keys)
            self._pending_keys = None
