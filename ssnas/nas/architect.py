"""DARTS's second-order architecture gradient (Liu et al. 2019, Sec. 2.3, Eqs. 6-8).

    grad_alpha L_val(w', alpha) - xi * grad^2_{alpha,w} L_train(w, alpha) grad_{w'} L_val(w', alpha),
    w' = w - xi * grad_w L_train(w, alpha)     (one virtual SGD step, with the optimiser's momentum and decay)

The Hessian-vector product is the finite difference (Eq. 8)
    [grad_alpha L_train(w+, alpha) - grad_alpha L_train(w-, alpha)] / (2 eps),  w+- = w +- eps grad_{w'} L_val,
with eps = 0.01 / ||grad_{w'} L_val|| (Sec. 2.3, footnote). Weights are swapped in place and restored from
a copy, so no second model is built.

Under torchrun every gradient above is the global batch's: `average` (ssnas.runs.distributed.Ranks.average) takes
each one's mean over the ranks as soon as it is computed, so the virtual step, eps and the finite difference are
the same on every rank and equal to one process's on the global batch.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

Average = Callable[[Sequence[torch.Tensor]], list[torch.Tensor]]


def _grads(loss: torch.Tensor, params: list[torch.Tensor], average: Average) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return average([torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)])


def unrolled_arch_grads(loss_on: Callable[[str], torch.Tensor], weights: list[torch.Tensor],
                        alphas: list[torch.Tensor], optimizer: torch.optim.SGD,
                        average: Average = list) -> list[torch.Tensor]:
    """Gradients for the alphas; `loss_on("train")` / `loss_on("val")` evaluate the loss on the fixed batches;
    `average` reduces each gradient over the ranks of a distributed run (the identity by default)."""
    group = optimizer.param_groups[0]
    xi, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
    backup = [w.detach().clone() for w in weights]

    g_train = _grads(loss_on("train"), weights, average)
    with torch.no_grad():  # w' = w - xi * (momentum * buf + g + decay * w), as the virtual step of the reference code
        for w, g in zip(weights, g_train):
            buf = optimizer.state.get(w, {}).get("momentum_buffer")
            step = g + decay * w
            if buf is not None:
                step = step + momentum * buf
            w.sub_(xi * step)

    grads = _grads(loss_on("val"), alphas + weights, average)
    d_alpha, d_w = grads[: len(alphas)], grads[len(alphas):]
    eps = 0.01 / torch.cat([g.flatten() for g in d_w]).norm().clamp_min(1e-12)

    with torch.no_grad():
        for w, b, v in zip(weights, backup, d_w):
            w.copy_(b + eps * v)
    g_plus = _grads(loss_on("train"), alphas, average)
    with torch.no_grad():
        for w, b, v in zip(weights, backup, d_w):
            w.copy_(b - eps * v)
    g_minus = _grads(loss_on("train"), alphas, average)
    with torch.no_grad():
        for w, b in zip(weights, backup):
            w.copy_(b)
    return [da - xi * (gp - gm) / (2 * eps) for da, gp, gm in zip(d_alpha, g_plus, g_minus)]
