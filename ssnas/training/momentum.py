"""Momentum (EMA) copies of networks and a FIFO queue of keys: the shared machinery of MoCo-style objectives
(CLSA) and of BYOL.

A momentum copy is a frozen deep copy whose weights follow the online network by an exponential moving average,
    xi <- tau * xi + (1 - tau) * theta     (MoCo, He et al. 2020, Sec. 3.2 Eq. 2; BYOL, Grill et al. 2020, Sec. 3.1)
and is never trained by gradient. It lives inside the objective, so it is in the objective's `state_dict` and a
resumed run continues with exactly the same targets.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn


def momentum_copy(module: nn.Module) -> nn.Module:
    """A deep copy with every parameter frozen (`requires_grad=False`), so no optimiser ever picks it up."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update_(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- tau * target + (1 - tau) * online, over all parameters and floating-point buffers.

    Floating buffers (BatchNorm running statistics) are averaged like parameters so the copy stays one
    consistent average of the online network; integer buffers (`num_batches_tracked`) are copied. The two
    modules must have the same structure (the target was made by `momentum_copy(online)`).
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"EMA decay tau must be in [0, 1], got {tau}")
    t_params, o_params = list(target.parameters()), list(online.parameters())
    t_bufs, o_bufs = list(target.buffers()), list(online.buffers())
    if len(t_params) != len(o_params) or len(t_bufs) != len(o_bufs):
        raise ValueError("EMA target and online network differ in structure; make the target with momentum_copy")
    t_float = [t for t, o in zip(t_bufs, o_bufs) if t.is_floating_point()]
    o_float = [o for t, o in zip(t_bufs, o_bufs) if t.is_floating_point()]
    weight = 1.0 - tau
    if t_params:
        # lerp(t, o, w) = t + w (o - t) = tau t + (1 - tau) o; one fused kernel per dtype/device group
        torch._foreach_lerp_(t_params, [o.detach() for o in o_params], weight)
    if t_float:
        torch._foreach_lerp_(t_float, o_float, weight)
    for t, o in zip(t_bufs, o_bufs):
        if not t.is_floating_point():
            t.copy_(o)


def byol_tau(progress: float, tau_base: float) -> float:
    """BYOL's target decay schedule (Grill et al. 2020, Sec. 3.3 "Optimization"):
        tau = 1 - (1 - tau_base) * (cos(pi k / K) + 1) / 2,
    with k / K = `progress`, the share of training done: tau_base at the start, 1 at the end."""
    progress = min(max(progress, 0.0), 1.0)
    return 1.0 - (1.0 - tau_base) * (math.cos(math.pi * progress) + 1.0) / 2.0


class KeyQueue(nn.Module):
    """A FIFO bank of L2-normalised keys (MoCo Sec. 3.2, "dictionary as a queue"): the newest batch replaces
    the oldest entries.

    Stored as `keys` [size, dim] plus a write pointer, both buffers, so checkpoints keep the queue exactly.
    Initialised with random unit vectors as in MoCo's reference code (the first size/batch steps contrast
    against noise, which is what the paper's queue does too).
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"queue size and dim must be positive, got {size} and {dim}")
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.keys.shape[0]

    @torch.no_grad()
    def push(self, keys: torch.Tensor) -> None:
        """Enqueue a batch [n, dim]; the n oldest entries are dropped. Works for any n (wraps around)."""
        keys = keys.detach().to(self.keys.dtype)
        if keys.shape[0] > self.size:  # only the newest `size` keys can survive
            keys = keys[-self.size:]
        n = keys.shape[0]
        # index arithmetic on the device: no host sync for the pointer
        slots = (self.ptr + torch.arange(n, device=self.keys.device)) % self.size
        self.keys.index_copy_(0, slots, keys)
        self.ptr.copy_((self.ptr + n) % self.size)
