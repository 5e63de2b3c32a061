"""Continual (rehearsal-based) contrastive self-supervised learning: the maths and the settings of
`ssnas retrain --continual-steps K`; the loop is ssnas.continual.

After Lin, Wang, Lin, "Continual Contrastive Learning for Image Classification" (ICME 2022, arXiv 2107.01776;
code VDIGPKU/ContinualContrastiveLearning, "CCL"): unlabelled data arrives in K steps. After each step a few
exemplars of it are kept; in later steps they join the training data (rehearsal) and two terms protect what the
network knew:

- self-supervised knowledge distillation: a teacher (the network as it was when the step began, then an EMA of the
  student, momentum 0.996 per epoch: moco/builder.py `reset_teacher`, `update_teacher`) gives, for the exemplars in
  a batch, the distribution of similarities between each exemplar's augmented view and every exemplar's plain
  (unaugmented) image; the student's distribution is pulled to it:
      L_kd = KL( softmax(t_q t_a^T / 0.04) || softmax(s_q s_a^T / 0.07) )     (batchmean; weight 0.1)
- an extra sample queue of 256 keys of old data (filled from the main queue when the first incremental step
  begins, then with the keys of exemplars), contrasted against each query with its positive:
      L_extra = CE([q.k, q.E^T] / T, 0)                                       (weight 0.1)

  (T is MoCo's own temperature, the main loss's: here the objective's temperature by default;
  builder.py `MoCoCCL.forward_train`: `0.1 * criterion(logits_extra_sample, ...)`, `0.1 * kl_loss`,
  `F.log_softmax(s_simi / 0.07)`, `F.softmax(t_simi / 0.04)`; train.py `--ccl-k 256`, `--ccl-teacher-m 0.996`).

Exemplars (train.py `save_replay_image`, `--n-save 20` per class): CCL clusters the step's images with k-means
(as many clusters as the step has classes, on the plain images' embeddings) and keeps, per cluster, the images
whose embeddings vary least over 6 augmented views ("min_var"); the SimpleReplay baseline keeps random images.
Here "random" keeps random images per class. The reference is MoCo v2; here any objective with an `embed`
(SimCLR, CLSA, ...) plays its part: the query is the embedding of the first view, the positive (no gradient) that
of the second, and the teacher is a frozen copy of the encoder and of the objective's heads. An objective's own
momentum encoder (CLSA's key encoder) carries over from step to step; CCL's MoCo resets its key encoder to the
query encoder when a step begins (`reset_k`).

Evaluation follows the continual-learning convention (Chaudhry et al., "Riemannian Walk for Incremental
Learning", ECCV 2018, Sec. 4): with a_{k,j} the accuracy on the test images of step j's classes after training step
k (one classifier over every class seen so far),
    average accuracy A_k = (1/k) sum_{j<=k} a_{k,j},
    forgetting       F_k = 1/(k-1) sum_{j<k} max_{l<k} (a_{l,j} - a_{k,j})   (F_1 = 0).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ssnas.config import Tunable, check_tree
from ssnas.errors import UserError
from ssnas.training.momentum import KeyQueue, ema_update_, momentum_copy
from ssnas.training.objective import Batch, Objective

# What `ssnas tune --target genotype --continual-steps K` may search besides the augmentation and the objective.
TUNABLE = (
    Tunable("continual.distill_weight", "float", 0.01, 1.0, log=True,
            why="CCL weighs the similarity distillation 0.1 (builder.py); a decade either way"),
    Tunable("continual.extra_queue_weight", "float", 0.01, 1.0, log=True,
            why="CCL weighs the extra-queue term 0.1 (builder.py); a decade either way"),
    Tunable("continual.distill_teacher_temperature", "float", 0.01, 0.2, log=True,
            why="CCL's teacher temperature 0.04, sharper than the student's 0.07 (builder.py)"),
)
SPLITS = ("class", "data")
METHODS = ("ccl", "replay", "finetune", "joint")
SELECTIONS = ("min_var", "random")


@dataclass
class ContinualConfig:
    """Defaults: CCL's train.py and moco/builder.py (see the module docstring)."""

    steps: int = field(default=0, metadata={
        "flag": "--continual-steps", "help": "split the training set into K steps learnt one after the other (CCL: 10); "
                                             "0 = ordinary retraining on all of it at once", "range": "[0, 1000]"})
    split: str = field(default="class", metadata={
        "flag": "--continual-split", "help": "class: each step brings its own classes (class-incremental, CCL's "
                                             "CIFAR-100 setting); data: random equal shares of every class",
        "choices": SPLITS})
    method: str = field(default="ccl", metadata={
        "flag": "--continual-method", "help": "ccl: exemplars + distillation + extra queue (Lin et al. 2022); replay: "
                                              "random exemplars only; finetune: plain sequential training (the "
                                              "baseline); joint: all steps' data at once (the upper bound), scored "
                                              "per step's classes like the others", "choices": METHODS})
    exemplars: int = field(default=20, metadata={
        "flag": "--exemplars", "help": "images kept per class of each step for rehearsal (CCL --n-save: 20)",
        "range": "[0, 100000]"})
    selection: str = field(default="min_var", metadata={
        "flag": "--exemplar-selection", "help": "min_var: CCL's k-means + least variance over augmented views; random: "
                                                "random images per class (replay always uses random)",
        "choices": SELECTIONS})
    selection_views: int = field(default=6, metadata={"help": "augmented views min_var compares (CCL: 6)",
                                                      "range": "[1, 64]"})
    distill_weight: float = field(default=0.1, metadata={"help": "weight of the similarity distillation (CCL: 0.1)",
                                                         "range": "[0, 1000]"})
    distill_student_temperature: float = field(default=0.07, metadata={
        "help": "temperature of the student's similarity distribution (CCL: 0.07)", "range": "(0, 100]"})
    distill_teacher_temperature: float = field(default=0.04, metadata={
        "help": "temperature of the teacher's similarity distribution (CCL: 0.04)", "range": "(0, 100]"})
    teacher_momentum: float = field(default=0.996, metadata={
        "help": "the teacher's EMA momentum, applied after every epoch (CCL --ccl-teacher-m: 0.996)", "range": "[0, 1]"})
    extra_queue_size: int = field(default=256, metadata={"help": "keys of old data in the extra queue (CCL --ccl-k: 256)",
                                                         "range": "[1, 1048576]"})
    extra_queue_weight: float = field(default=0.1, metadata={"help": "weight of the extra-queue term (CCL: 0.1)",
                                                             "range": "[0, 1000]"})
    extra_queue_temperature: float = field(default=0.0, metadata={
        "help": "temperature of the extra-queue term; 0 = the objective's own temperature (CCL's extra queue uses "
                "MoCo's T, the temperature of its main contrastive loss)", "range": "[0, 100]"})
    linear_epochs: int = field(default=100, metadata={
        "help": "epochs of the linear probe after each step (SimCLR README: 100)", "range": "[1, 100000]"})

    def check(self) -> None:
        """The rules across fields (each field's own range is declared beside it)."""
        if self.steps == 1:
            raise UserError(f"continual.steps (--continual-steps) must be 0 (off) or at least 2, got {self.steps}")
        if self.exemplars < 1 and self.keeps_exemplars:
            raise UserError(f"continual.exemplars (--exemplars) must be at least 1 with --continual-method "
                            f"{self.method}, got {self.exemplars}")

    def validate(self) -> None:
        """Every field against its declared range, then `check`."""
        check_tree(self, "continual.")

    @property
    def keeps_exemplars(self) -> bool:
        return self.steps > 0 and self.method in ("ccl", "replay")

    @property
    def selection_used(self) -> str:
        return "random" if self.method == "replay" else self.selection


# ---- the data stream ----------------------------------------------------------------------------------------------

@dataclass
class Step:
    """One step of the stream: its training images (dataset indices) and the classes whose test images are its task
    (class-incremental: its own classes; data-incremental: every class)."""

    index: torch.Tensor
    classes: tuple[int, ...]


def split_steps(labels: torch.Tensor, num_classes: int, steps: int, split: str, seed: int) -> tuple[list[Step], list[int]]:
    """The K steps and the class order. class: the classes in a seeded random order (CCL shuffles with a fixed
    seed), num_classes / K per step; data: a seeded random permutation of the images cut into K equal shares."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(num_classes, generator=g).tolist()
    if split == "class":
        if num_classes % steps:
            raise UserError(f"{num_classes} classes do not split into {steps} equal class-incremental steps; choose "
                            f"--continual-steps among the divisors of {num_classes}, or --continual-split data")
        per = num_classes // steps
        out = []
        for k in range(steps):
            classes = tuple(order[k * per:(k + 1) * per])
            out.append(Step(torch.nonzero(torch.isin(labels, torch.tensor(classes))).flatten(), classes))
        return out, order
    perm = torch.randperm(len(labels), generator=g)
    return [Step(chunk.sort().values, tuple(range(num_classes))) for chunk in perm.chunk(steps)], order


# ---- exemplar selection ---------------------------------------------------------------------------------------------

def select_random(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Positions (into `labels`) of `per_class` random images of each class present (all of a smaller class)."""
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in labels.unique().tolist():
        where = torch.nonzero(labels == c).flatten()
        keep.append(where[torch.randperm(len(where), generator=g)[:per_class]])
    return torch.cat(keep).sort().values


def select_min_variance(plain: torch.Tensor, views: torch.Tensor, clusters: int, per_cluster: int,
                        seed: int) -> torch.Tensor:
    """CCL's `save_replay_image(indicator='min_var')`: k-means on the plain images' embeddings `plain` [n, D] into
    `clusters` groups; in each, the `per_cluster` images whose embeddings over the augmented views and the plain
    image (`views` [n, V, D], `plain`) lie closest to their normalised mean, sum_v ||f_v - m/|m| ||^2. Returns
    positions into `plain`, sorted. Needs no label."""
    from sklearn.cluster import KMeans  # scikit-learn: the reference's k-means

    n = len(plain)
    clusters = max(1, min(clusters, n))
    assign = KMeans(n_clusters=clusters, n_init=10, random_state=seed).fit_predict(plain.double().cpu().numpy())
    every = torch.cat([views, plain[:, None]], dim=1).float()  # [n, V + 1, D]
    centre = F.normalize(every.mean(dim=1, keepdim=True), dim=2)
    spread = (every - centre).square().sum(dim=(1, 2))
    keep = []
    for c in range(clusters):
        members = torch.from_numpy(np.nonzero(assign == c)[0])
        keep.append(members[spread[members].argsort()[:per_cluster]])
    return torch.cat(keep).sort().values


# ---- the two CCL terms --------------------------------------------------------------------------------------------

def similarity_distillation(student_q: torch.Tensor, student_anchor: torch.Tensor, teacher_q: torch.Tensor,
                            teacher_anchor: torch.Tensor, student_t: float = 0.07,
                            teacher_t: float = 0.04) -> torch.Tensor:
    """KL(p_teacher || p_student), averaged over the rows (batchmean), between the row-softmaxed similarity matrices
    q a^T / t of the exemplars' augmented views q against their plain images a; all inputs L2-normalised [m, D];
    the teacher is the target (no gradient)."""
    log_student = F.log_softmax(student_q.float() @ student_anchor.float().t() / student_t, dim=1)
    with torch.no_grad():
        teacher = F.softmax(teacher_q.float() @ teacher_anchor.float().t() / teacher_t, dim=1)
    return F.kl_div(log_student, teacher, reduction="batchmean")


def extra_queue_loss(q: torch.Tensor, k: torch.Tensor, extra: torch.Tensor, temperature: float) -> torch.Tensor:
    """CE([q.k, q.E^T] / T, 0): each query against its positive key and the extra queue's keys of old data."""
    positive = (q.float() * k.detach().float()).sum(dim=1, keepdim=True)
    logits = torch.cat([positive, q.float() @ extra.detach().float().t()], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


# ---- average accuracy and forgetting ------------------------------------------------------------------------------

def continual_metrics(accuracy: list[list[float]]) -> dict[str, list[float]]:
    """`accuracy[k][j]` = a_{k,j} for j <= k (0-based steps): the average accuracy A_k and the forgetting F_k after
    every step (Chaudhry et al. 2018, Sec. 4)."""
    average, forgetting = [], []
    for k, row in enumerate(accuracy):
        if len(row) != k + 1:
            raise ValueError(f"after step {k} the accuracy row needs {k + 1} tasks, got {len(row)}")
        average.append(sum(row) / len(row))
        drops = [max(accuracy[l][j] for l in range(j, k)) - row[j] for j in range(k)]
        forgetting.append(sum(drops) / len(drops) if drops else 0.0)
    return {"average_accuracy": average, "forgetting": forgetting}


# ---- the CCL terms as a module: teacher, extra queue, both losses -------------------------------------------------

class ContinualTerms(nn.Module):
    """What CCL adds to an objective's loss once the first incremental step begins: the teacher, the extra queue and
    both terms. `terms(encoder, objective, batch, plain)` gives `{"loss": w_kd L_kd + w_extra L_extra, "distill",
    "extra_queue", "old_in_batch"}` and then enqueues the keys of the batch's exemplars into the extra queue (as the
    reference enqueues after computing the loss); `plain(ids)` gives the unaugmented views of dataset ids."""

    def __init__(self, cfg: ContinualConfig, dim: int, objective_temperature: float = 0.2):
        super().__init__()
        self.cfg = cfg
        # the extra queue's temperature: its own, else the objective's (CCL: MoCo's T for both)
        self.extra_temperature = cfg.extra_queue_temperature or objective_temperature
        self.extra = KeyQueue(cfg.extra_queue_size, dim)
        self.teacher_encoder: nn.Module | None = None
        self.teacher_objective: Objective | None = None
        self.old_ids = torch.zeros(0, dtype=torch.long)  # dataset ids of the exemplars (set per step)

    def begin_step(self, encoder: nn.Module, objective: Objective, old_ids: torch.Tensor, old_keys: torch.Tensor) -> None:
        """A new incremental step: the teacher becomes a frozen copy of the network as it is now (reset_teacher);
        at the first one, the extra queue starts from keys of old data (begin_incremental)."""
        first = self.teacher_encoder is None
        self.teacher_encoder, self.teacher_objective = momentum_copy(encoder).eval(), momentum_copy(objective).eval()
        self.old_ids = old_ids.to(self.extra.keys.device)
        if first:
            self.extra.push(old_keys)

    @torch.no_grad()
    def after_epoch(self, encoder: nn.Module, objective: Objective) -> None:
        """update_teacher: teacher <- m teacher + (1 - m) student, once per epoch."""
        assert self.teacher_encoder is not None and self.teacher_objective is not None
        ema_update_(self.teacher_encoder, encoder, self.cfg.teacher_momentum)
        ema_update_(self.teacher_objective, objective, self.cfg.teacher_momentum)

    def forward(self, encoder: nn.Module, objective: Objective, batch: Batch,
                plain: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
        assert self.teacher_encoder is not None and self.teacher_objective is not None
        cfg = self.cfg
        q = objective.embed(encoder, batch.views[0])
        with torch.no_grad():
            k = objective.embed(encoder, batch.views[1])
        # a copy: the keys pushed below must not change the tensor the backward pass reads
        extra = extra_queue_loss(q, k, self.extra.keys.clone(), self.extra_temperature)
        old = torch.isin(batch.index, self.old_ids.to(batch.index.device))
        distill = q.new_zeros((), dtype=torch.float32)
        if int(old.sum()) >= 2:  # a distribution over one exemplar is trivially 1 (and BN needs two samples)
            anchors = plain(batch.index[old])
            s_anchor = objective.embed(encoder, anchors)
            with torch.no_grad():
                t_q = self.teacher_objective.embed(self.teacher_encoder, batch.views[0][old])
                t_anchor = self.teacher_objective.embed(self.teacher_encoder, anchors)
            distill = similarity_distillation(q[old], s_anchor, t_q, t_anchor, cfg.distill_student_temperature,
                                              cfg.distill_teacher_temperature)
        if bool(old.any()):
            self.extra.push(k[old])
        loss = cfg.distill_weight * distill + cfg.extra_queue_weight * extra
        return {"loss": loss, "distill": distill.detach(), "extra_queue": extra.detach(),
                "old_in_batch": old.sum().float()}
