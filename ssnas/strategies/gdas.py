"""GDAS (Dong & Yang, "Searching for a Robust Neural Architecture in Four GPU Hours", CVPR 2019): every forward
pass trains one sampled discrete cell.

Each edge draws one op with the Gumbel-max trick, o* = argmax_o (alpha_o + g_o), g_o ~ Gumbel(0, 1) (Sec. 3.2,
Eq. 4), and only o* is run: the edge's output is o*(x), as in the discrete cell. The alphas learn through the
Gumbel-softmax relaxation h~ = softmax((alpha + g) / tau) (Eq. 5) with the straight-through estimator: the forward
weight is exactly one-hot, the backward pass differentiates h~. tau falls linearly from 10 to 0.1 over the search
(Sec. 4.1; NAS-Bench-201's GDAS config, tau_max = 10, tau_min = 0.1). The cell is the argmax of alpha (Sec. 3.3).

Why it is here: a soft supernet always carries every edge's skip connection at about 1/|O| weight, so its loss
cannot tell whether a cell needs a shortcut (BENCHMARKS.md, section 1c: the discretisation gap). Here every step
trains and scores a discrete cell, with and without the shortcut as the samples fall.

Two estimators (`gradient`):
- `sampled` (default, GDAS's cost): only the drawn op is computed, so the alphas get dL/dh_{o*} * dh~_{o*}/dalpha,
  the straight-through gradient through the drawn op's weight alone. (GDAS's released code also adds each undrawn
  weight to the edge's output as a scalar of value 0, which gives those weights the gradient sum(dL/dy); that term
  is left out here.) The undrawn weights are exact zeros without a gradient, so the fast kernels skip their ops and
  the textbook sum gives the same numbers; a step costs about 0.4 of a soft supernet's.
- `all`: the full straight-through estimator, sum_o dL/dh_o * dh~_o/dalpha with dL/dh_o = <dL/dy, o(x)>: how the
  loss of the drawn discrete cell changes as each op is mixed in. Every op runs (the cost of a soft supernet), but
  the forward pass is still the discrete cell's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import torch
import torch.nn.functional as F

from ssnas.errors import UserError
from ssnas.kernels.mixed import keep_zero_weight_ops
from ssnas.strategies.base import SearchTools, Strategy


@dataclass
class GdasOptions:
    tau_max: float = field(default=10.0, metadata={"help": "Gumbel-softmax temperature at the start (GDAS: 10)",
                                                   "range": "(0, 1e6]"})
    tau_min: float = field(default=0.1, metadata={"help": "temperature at the end, reached linearly (GDAS: 0.1)",
                                                  "range": "(0, 1e6]"})
    gradient: str = field(default="sampled", metadata={
        "help": "sampled: the straight-through gradient through the drawn op only (GDAS's single path); all: "
                "through every op's weight (every op runs)", "choices": ["sampled", "all"]})


def temperature(tau_max: float, tau_min: float, progress: float) -> float:
    """tau falls linearly from tau_max to tau_min over the search (GDAS Sec. 4.1)."""
    return tau_max - (tau_max - tau_min) * progress


def gumbel_one_hot(alpha: torch.Tensor, alive: torch.Tensor, tau: float, gumbel: torch.Tensor | None = None,
                   every_op: bool = False) -> torch.Tensor:
    """One op per edge: the forward value is one_hot(argmax(alpha + g)) (Gumbel-max, Eq. 4), the gradient that of
    h~ = softmax((alpha + g) / tau) (Eq. 5): the drawn op's alone (undrawn ops are constant zeros), or with
    `every_op` every op's (undrawn ops are zeros with a gradient). `gumbel` fixes g (for tests); removed ops are
    never drawn."""
    if gumbel is None:
        gumbel = -torch.empty_like(alpha).exponential_().log()  # -log(E), E ~ Exp(1), is Gumbel(0, 1)
    logits = (alpha + gumbel).masked_fill(~alive, float("-inf"))
    soft = F.softmax(logits / tau, dim=-1)
    hard = F.one_hot(logits.argmax(dim=-1), alpha.shape[-1]).to(soft.dtype)
    if every_op:
        return hard + (soft - soft.detach())  # value: exactly one-hot; gradient: d soft / d alpha
    return hard * (1.0 + soft - soft.detach())  # value: exactly one-hot; gradient: d soft_{o*} / d alpha


class Gdas(Strategy):
    name = "gdas"
    summary = ("GDAS: one Gumbel-sampled op per edge in every forward pass, straight-through gradient, tau 10 -> 0.1 "
               "(Dong & Yang 2019)")
    Options = GdasOptions

    @classmethod
    def check_options(cls, opts: GdasOptions) -> None:
        if opts.tau_min > opts.tau_max:
            raise UserError(f"strategy.tau_min ({opts.tau_min}) must not exceed strategy.tau_max ({opts.tau_max})")

    def __init__(self, opts: GdasOptions, supernet, primitives: list[str], epochs: int):
        super().__init__(opts, supernet, primitives, epochs)
        self.tau = opts.tau_max
        self.every_op = opts.gradient == "all"
        if self.every_op:  # undrawn ops have weight 0 but a gradient: the fast kernels must run them
            keep_zero_weight_ops(supernet)

    def before_step(self, supernet, progress: float) -> None:
        self.tau = temperature(self.opts.tau_max, self.opts.tau_min, progress)

    def op_weights(self, alphas: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {kind: gumbel_one_hot(a, self.alive[kind].to(a.device), self.tau,
                                     every_op=self.every_op) for kind, a in alphas.items()}

    def after_epoch(self, epoch: int, tools: SearchTools) -> dict[str, float]:
        return {"tau": round(self.tau, 6)}  # the temperature of the epoch's last step, for metrics.jsonl

    def stop_reason(self, settled: str | None) -> str | None:
        """GDAS runs its whole temperature schedule (a fixed number of epochs in the paper), so the DARTS+ rule is
        ignored."""
        return None
