"""The continuous relaxation of a categorical choice of op (DARTS, Liu et al. 2019, Sec. 2.2, Eq. 2).

    o_bar(x) = sum_o softmax(alpha)_o * o(x)

Two exact shortcuts (same outputs and gradients as the plain sum):
- the `none` op contributes w * 0 = 0 and passes no gradient to any weight, so it is never run; its
  softmax weight still takes part in the normalisation, which is where its alpha gets its gradient;
- every candidate that starts with a ReLU on the edge's input shares one ``relu(x)``.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ssnas.ops import OpFactory, pool_bn


class MixedOp(nn.Module):
    """A weighted sum over candidate ops on one edge."""

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
        relu_x = None
        out = None
        for i in self.live:
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
