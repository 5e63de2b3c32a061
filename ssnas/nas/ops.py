"""Candidate ops shared by the search spaces (DARTS, Liu et al. 2019, Sec. 3.1 / App. A.1.1), as the paper writes
them: convolutions are ordered ReLU-Conv-BN and separable convolutions are applied twice.

These are the textbook forms. `ssnas.kernels.use_fast_kernels` swaps in subclasses that compute the same maths
faster (and share work between the edges leaving one state); tests/test_fast_path.py holds the two together.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


class ReLUConvBN(nn.Module):
    starts_with_relu = True  # its first layer is a ReLU of its input (TE-NAS counts those activation patterns)

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(F.relu(x)))


class DilConv(nn.Module):
    """ReLU, depthwise (dilated) conv, pointwise conv, BN."""

    starts_with_relu = True

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int,
                 affine: bool = True):
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, kernel, stride=stride, padding=padding, dilation=dilation,
                                   groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pointwise(self.depthwise(F.relu(x))))


class SepConv(nn.Module):
    """Two stacked separable convolutions; only the first may stride (DARTS App. A.1.1)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True):
        super().__init__()
        self.first = DilConv(c_in, c_in, kernel, stride, padding, 1, affine)
        self.second = DilConv(c_in, c_out, kernel, 1, padding, 1, affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


class FactorizedReduce(nn.Module):
    """Halves the resolution with two offset 1x1 stride-2 convs, so no input pixel is skipped."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.conv_even = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_odd = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        odd = x[:, :, 1:, 1:]
        if x.shape[-1] % 2:  # odd sides: pad so both branches land on the same grid
            odd = F.pad(odd, (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv_even(x), self.conv_odd(odd)], dim=1))


class Zero(nn.Module):
    """The `none` op: multiplies its input by 0 (strided on a reduction edge)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class AvgPool3x3(nn.AvgPool2d):
    """DARTS's avg_pool_3x3: padding 1, the padding not counted."""

    def __init__(self, stride: int):
        super().__init__(3, stride=stride, padding=1, count_include_pad=False)


def pool_bn(pool: nn.Module, c: int, with_bn: bool) -> nn.Module:
    # DARTS adds an affine-free BN after pooling inside the supernet, so pools are on the same scale as convs.
    return nn.Sequential(pool, nn.BatchNorm2d(c, affine=False)) if with_bn else pool


OpFactory = Callable[[int, int, bool], nn.Module]

# name -> constructor(channels, stride, affine). Names are DARTS's exact strings (cnn/genotypes.py).
DARTS_OPS: dict[str, OpFactory] = {
    "none": lambda c, stride, affine: Zero(stride),
    "max_pool_3x3": lambda c, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "avg_pool_3x3": lambda c, stride, affine: AvgPool3x3(stride),
    "skip_connect": lambda c, stride, affine: nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine),
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, c, 3, stride, 1, affine),
    "sep_conv_5x5": lambda c, stride, affine: SepConv(c, c, 5, stride, 2, affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, c, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda c, stride, affine: DilConv(c, c, 5, stride, 4, 2, affine),
}
