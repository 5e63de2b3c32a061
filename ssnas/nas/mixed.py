"""The continuous relaxation of a categorical choice of op (DARTS, Liu et al. 2019, Sec. 2.2, Eq. 2),

    o_bar(x) = sum_o w_o * o(x),    w = softmax(alpha) of the edge,

and PC-DARTS's partial channel connection on top of it (Xu et al., ICLR 2020, Sec. 3.2).

These are the textbook forms, and the float64 oracle of the exact speed route (`ssnas.kernels.use_fast_kernels`,
checked in tests/test_fast_path.py): it skips `none`, shares work between the edges leaving one state and runs
faster kernels, with the same outputs and gradients.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ssnas.nas.ops import OpFactory, pool_bn


class MixedOp(nn.Module):
    """One edge of a supernet: a weighted sum over every candidate op."""

    def __init__(self, primitives: list[str], ops: Mapping[str, OpFactory], channels: int, stride: int,
                 pool_bn_in_search: bool = True):
        super().__init__()
        self.primitives = list(primitives)
        self.stride = stride
        self.candidates = nn.ModuleList(
            pool_bn(ops[name](channels, stride, False), channels, pool_bn_in_search) if "pool" in name
            else ops[name](channels, stride, False)
            for name in self.primitives)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(w * op(x) for w, op in zip(weights, self.candidates))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave `groups` channel groups (ShuffleNet; PC-DARTS Sec. 3.2 shuffles after every partial edge, so
    a different 1/K of the channels is searched on the next edge): channel g * (C/groups) + i goes to
    i * groups + g."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w).contiguous(
        memory_format=torch.channels_last)


class PartialMixedOp(nn.Module):
    """PC-DARTS's partial channel connection (Xu et al., ICLR 2020, Sec. 3.2, Eq. 3): the first C/K channels
    go through the mixed op, the other channels bypass it (2x2 max-pooled on a reduction edge, as the
    reference code does), then the channels are shuffled."""

    def __init__(self, primitives: list[str], ops: Mapping[str, OpFactory], channels: int, stride: int, k: int):
        super().__init__()
        self.k, self.stride, self.part = k, stride, channels // k
        self.mixed = MixedOp(primitives, ops, self.part, stride)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.join(self.mixed(x[:, :self.part], weights), x)

    def join(self, searched: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The searched channels, then the bypassed ones, shuffled."""
        rest = x[:, self.part:]
        if self.stride == 2:
            rest = F.max_pool2d(rest, 2, 2)
        return channel_shuffle(torch.cat([searched, rest], dim=1), self.k)
