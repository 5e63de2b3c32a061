"""The continuous relaxation of a categorical choice of op (DARTS, Liu et al. 2019, Sec. 2.2, Eq. 2).

    o_bar(x) = sum_o softmax(alpha)_o * o(x)

Two exact shortcuts (same outputs and gradients as the plain sum):
- the `none` op contributes w * 0 = 0 and passes no gradient to any weight, so it is never run; its
  softmax weight still takes part in the normalisation, which is where its alpha gets its gradient;
- every candidate that starts with a ReLU on the edge's input shares one ``relu(x)``;
- on CPU, a candidate whose softmax weight is exactly 0 (an underflowed softmax) is skipped too: w * y = 0
  and every gradient through it is multiplied by w = 0. (Its BN's running statistics, which the search's
  training-mode BN never reads, are then not updated for that step.)

The candidate ops themselves run the fast kernels of ssnas.fastconv (see ssnas.ops.use_fast_kernels).
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ssnas.ops import OpFactory, pool_bn


class MixedOp(nn.Module):
    """A weighted sum over candidate ops on one edge. ``fast = False`` runs the textbook sum instead."""

    fast = True

    def __init__(self, primitives: list[str], ops: Mapping[str, OpFactory], channels: int, stride: int,
                 pool_bn_in_search: bool = True):
        super().__init__()
        self.primitives = list(primitives)
        self.candidates = nn.ModuleList()
        self.live: list[int] = []  # indices of the ops that are actually run
        for i, name in enumerate(self.primitives):
            op = ops[name](channels, stride, False)
            if "pool" in name:
                op = pool_bn(op, channels, pool_bn_in_search)
            self.candidates.append(op)
            if name != "none":
                self.live.append(i)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if not self.fast:
            return reference_mixed_forward(self, x, weights)
        relu_x = None
        out = None
        live = self.live
        if weights.device.type == "cpu":  # reading the weights here costs no device sync
            flat = weights.detach().tolist()
            live = [i for i in live if flat[i] != 0.0] or live
        for i in live:
            op = self.candidates[i]
            if getattr(op, "starts_with_relu", False):
                if relu_x is None:
                    relu_x = F.relu(x)
                y = op.forward_after_relu(relu_x)
            else:
                y = op(x)
            out = y * weights[i] if out is None else out + y * weights[i]
        assert out is not None, "a mixed op needs at least one op besides 'none'"
        return out


def reference_mixed_forward(op: MixedOp, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The textbook sum over every candidate, `none` included: the oracle for the fast path's tests."""
    return sum(w * candidate(x) for w, candidate in zip(weights, op.candidates))
