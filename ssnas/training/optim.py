"""Optimisers and learning-rate schedules for retraining and evaluation: LARS and warm-up + cosine.

LARS is written here (30 lines) rather than taken from a library: torch has none, and timm's `Lars`
would make timm a dependency for one class. It follows SimCLR's implementation (google-research/simclr
lars_optimizer.py), which is what "SimCLR with LARS" means in practice.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You, Gitman, Ginsburg 2017, Algorithm 1), as SimCLR applies it.

    For each parameter tensor w with gradient g, in groups with ``lars=True``:
        g <- g + weight_decay * w
        trust = eta * ||w|| / ||g||        (1 when either norm is 0)
        v <- momentum * v + lr * trust * g
        w <- w - v
    Groups with ``lars=False`` (SimCLR: biases and batch-norm parameters) get neither weight decay nor the
    trust ratio: plain momentum SGD in the same v-form.
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.001):
        if lr < 0 or momentum < 0 or weight_decay < 0 or eta <= 0:
            raise ValueError(f"invalid LARS settings: lr={lr}, momentum={momentum}, weight_decay={weight_decay}, eta={eta}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars=True))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["lars"]:
                    if group["weight_decay"]:
                        g = g.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    trust = torch.where((w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm,
                                        torch.ones_like(w_norm))
                    g = g * trust
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                v = state["momentum_buffer"]
                v.mul_(group["momentum"]).add_(g, alpha=group["lr"])
                p.sub_(v)
        return loss


def exclude_bias_and_norm(modules: Iterable[nn.Module]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(weights, biases and normalisation parameters) of trainable parameters. One-dimensional tensors are
    exactly the biases and BN scales/shifts here; SimCLR excludes them from weight decay and adaptation."""
    regular, excluded = [], []
    seen: set[int] = set()
    for module in modules:
        for p in module.parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (excluded if p.ndim <= 1 else regular).append(p)
    return regular, excluded


def make_optimizer(name: str, modules: Iterable[nn.Module], lr: float, momentum: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """`lars` (SimCLR's: biases and BN excluded) or `sgd` (momentum SGD, decay on every parameter as in
    DARTS and lightly's benchmarks)."""
    modules = list(modules)
    if name == "lars":
        regular, excluded = exclude_bias_and_norm(modules)
        groups = [{"params": regular}, {"params": excluded, "weight_decay": 0.0, "lars": False}]
        return LARS([g for g in groups if g["params"]], lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "sgd":
        params = [p for m in modules for p in m.parameters() if p.requires_grad]
        return torch.optim.SGD(list({id(p): p for p in params}.values()), lr=lr, momentum=momentum,
                               weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}")


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, base_lr: float, final_lr: float = 0.0) -> float:
    """The learning rate for step `step` (0-based): linear warm-up to `base_lr` over `warmup_steps`, then a
    cosine decay to `final_lr` at `total_steps` (SimCLR App. B.1; per step, as its code does). The warm-up
    reaches `base_lr` on its last step, (step + 1) / warmup_steps, so no step runs with a rate of 0."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return final_lr + (base_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


PRECISIONS = ("fp32", "bf16")  # of the search (`--precision`)


def uses_bf16(device: torch.device, precision: str) -> bool:
    """Whether a step's forward passes run under bfloat16 autocast (`--precision bf16`, on any device)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision == "bf16"


def autocast_bf16(device: torch.device, precision: str):
    """A context factory for a step's forward passes: bfloat16 autocast when `uses_bf16` (no loss scaling:
    bfloat16 keeps float32's exponent range), else nothing."""
    import contextlib

    if not uses_bf16(device, precision):
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def mixed_precision(device: torch.device, enabled: bool):
    """(autocast context factory, GradScaler): float16 autocast with loss scaling on CUDA when `enabled`;
    on CPU both are no-ops (CPU autocast to bfloat16 slows convolutions down rather than up)."""
    import contextlib

    on = enabled and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=on)
    if not on:
        return contextlib.nullcontext, scaler
    return (lambda: torch.autocast("cuda", dtype=torch.float16)), scaler
