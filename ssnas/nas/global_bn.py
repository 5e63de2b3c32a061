"""Batch normalisation over the global batch of a run on several processes (`--sync-bn`).

With one process per GPU, each BN normalises with its own shard's statistics: N ranks x B images are then not the
maths of one process on N*B images, and contrastive models can use the per-device statistics to tell positives
apart. SimCLR therefore aggregates BN's mean and variance over all devices ("Global BN", Chen et al. 2020, Sec. 2,
"Training with Large Batch Size"); torch.nn.SyncBatchNorm is that for CUDA:

    mean = sum_r sum_i x_ri / N,    var = sum_r sum_i (x_ri - mean)^2 / N,    N = sum_r n_r
    y = (x - mean) / sqrt(var + eps) * gamma + beta
    running_var <- (1 - m) running_var + m var N / (N - 1)

Here both sums are differentiable all-reduces (`Ranks.all_reduce_sum`), so autograd derives the backward pass,
and the module is a subclass of the BN it replaces: torch.nn.SyncBatchNorm refuses CPU tensors (so gloo runs and
the CPU tests could not use it), and it is no nn.BatchNorm2d, which the exact speed route (ssnas.kernels) fuses
and shares per state. Swapping the class keeps parameters, buffers and checkpoints as they are, so a run can
resume on another number of processes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssnas.runs.distributed import Ranks


def global_batch_norm(x: torch.Tensor, running_mean: torch.Tensor | None, running_var: torch.Tensor | None,
                      weight: torch.Tensor | None, bias: torch.Tensor | None, training: bool, momentum: float,
                      eps: float, ranks: Ranks) -> torch.Tensor:
    """`F.batch_norm` with batch statistics over every rank's batch (same arguments, plus `ranks`)."""
    if not training or not ranks.active:
        return F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
    dims = [0, *range(2, x.dim())]
    shape = [1, -1] + [1] * (x.dim() - 2)
    acc = x if x.dtype in (torch.float32, torch.float64) else x.float()  # statistics never in 16 bits
    count = acc.new_tensor([acc.numel() / acc.shape[1]])
    total = ranks.all_reduce_sum(torch.cat([acc.sum(dims), count]))
    n = total[-1].detach()
    mean = total[:-1] / n
    centred = acc - mean.view(shape)
    var = ranks.all_reduce_sum((centred * centred).sum(dims)) / n
    y = centred * torch.rsqrt(var + eps).view(shape)
    if weight is not None:
        y = y * weight.view(shape) + bias.view(shape)
    if running_mean is not None and running_var is not None:
        with torch.no_grad():
            running_mean.lerp_(mean.detach().to(running_mean.dtype), momentum)
            running_var.lerp_((var.detach() * n / (n - 1).clamp_min(1)).to(running_var.dtype), momentum)
    return y.to(x.dtype)


class GlobalBatchNorm:
    """Mixin over nn.BatchNorm1d/2d (see `use_global_batch_norm`): the same module, normalising over all ranks."""

    ranks: Ranks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative average, as nn.BatchNorm
                factor = 1.0 / float(self.num_batches_tracked)
        batch_stats = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return self.normalise(x, self.running_mean if track else None, self.running_var if track else None,
                              self.weight, self.bias, batch_stats, factor, self.eps)

    def normalise(self, x: torch.Tensor, running_mean: torch.Tensor | None, running_var: torch.Tensor | None,
                  weight: torch.Tensor | None, bias: torch.Tensor | None, training: bool, momentum: float,
                  eps: float) -> torch.Tensor:
        """`F.batch_norm`'s signature over the global batch (ssnas.kernels.fanout calls it for fused BNs)."""
        return global_batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps, self.ranks)


class GlobalBatchNorm1d(GlobalBatchNorm, nn.BatchNorm1d):
    pass


class GlobalBatchNorm2d(GlobalBatchNorm, nn.BatchNorm2d):
    pass


_GLOBAL = {nn.BatchNorm1d: GlobalBatchNorm1d, nn.BatchNorm2d: GlobalBatchNorm2d}


def use_global_batch_norm(model: nn.Module, ranks: Ranks) -> nn.Module:
    """Make every BatchNorm1d/2d of `model` normalise over the global batch of `ranks` (a no-op for one process).
    Call it before momentum copies are made, so that they normalise globally too. Returns `model`."""
    if not ranks.active:
        return model
    for m in model.modules():
        if type(m) in _GLOBAL:
            m.__class__ = _GLOBAL[type(m)]
            m.ranks = ranks
    return model
