"""Building blocks shared by the search spaces (DARTS, Liu et al. 2019, Sec. 3.1 / App. A.1.1).

Convolutions are ordered ReLU-Conv-BN and separable convolutions are applied twice, as in the paper.
Ops that begin with a ReLU expose ``forward_after_relu`` so a mixed op can compute ``relu(x)`` once and
share it between all its candidates: the same maths, one pass over the input instead of five.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ssnas.kernels.conv import (avg_pool_3x3, depthwise_conv, depthwise_conv_on_subgrids, depthwise_route, even_subgrid,
                            odd_subgrid, pointwise_conv)


class ReLUFirst(nn.Module):
    """An op whose first layer is a ReLU on its input; subclasses implement ``forward_after_relu``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_after_relu(F.relu(x))

    def forward_after_relu(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_shared(self, shared) -> torch.Tensor:
        """The op on ``shared.x``, reusing what other ops on the same input computed (ssnas.mixed.SharedInput)."""
        return self.forward_after_relu(shared.relu())


class ReLUConvBN(ReLUFirst):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward_after_relu(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class DilConv(ReLUFirst):
    """ReLU, depthwise (dilated) conv, pointwise conv, BN.

    ``fast`` (default) runs the convolutions through ssnas.fastconv: the same maths with cheaper backward
    passes; ``use_fast_kernels(model, False)`` switches back to the plain ``nn.Conv2d`` calls.
    """

    fast = True

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int,
                 affine: bool = True):
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, kernel, stride=stride, padding=padding, dilation=dilation,
                                   groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward_after_relu(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fast:
            return self.bn(self.pointwise(self.depthwise(x)))
        dw = self.depthwise
        y = depthwise_conv(x, dw.weight, dw.stride[0], dw.padding[0], dw.dilation[0])
        return self.bn(pointwise_conv(y, self.pointwise.weight))

    def _route(self, x: torch.Tensor) -> str | None:
        """The fast kernels' route for this conv on `x` (ssnas.fastconv.depthwise_route); None when off."""
        if not self.fast:
            return None
        dw = self.depthwise
        return depthwise_route(x.shape, dw.kernel_size[0], dw.kernel_size[1], dw.stride[0], dw.padding[0],
                               dw.dilation[0])

    def forward_shared(self, shared) -> torch.Tensor:
        # Both dilated convs of every edge leaving a state read the same parity sub-grids of relu(state):
        # they are cut once per state instead of once per conv.
        route = self._route(shared.x)
        if route not in ("even", "subgrids"):
            return self.forward_after_relu(shared.relu())
        dw = self.depthwise
        prepared = shared.cut(route)
        y = depthwise_conv(shared.x, dw.weight, dw.stride[0], dw.padding[0], dw.dilation[0], prepared=prepared)
        return self.bn(pointwise_conv(y, self.pointwise.weight))

    def forward_on_subgrids(self, shared) -> torch.Tensor | None:
        """The op's output in the parity sub-grid layout (ssnas.fastconv.to_subgrids), or None when this conv
        does not take that route. The 1x1 conv is per pixel and BN's statistics are over the same set of pixels
        in either layout, so both run on the sub-grids; a mixed op sums its dilated candidates there and
        converts back once."""
        if self._route(shared.x) != "subgrids":
            return None
        y = depthwise_conv_on_subgrids(shared.cut("subgrids"), self.depthwise.weight)
        return self.bn(pointwise_conv(y, self.pointwise.weight))


class SepConv(ReLUFirst):
    """Two stacked separable convolutions; only the first may stride (DARTS App. A.1.1)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True):
        super().__init__()
        self.first = DilConv(c_in, c_in, kernel, stride, padding, 1, affine)
        self.second = DilConv(c_in, c_out, kernel, 1, padding, 1, affine)

    def forward_after_relu(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first.forward_after_relu(x))


class FactorizedReduce(ReLUFirst):
    """Halves the resolution with two offset 1x1 stride-2 convs, so no input pixel is skipped.

    ``fast``: on even-sided maps a stride-2 1x1 conv is a matmul on a sub-grid (the even one, or the odd one
    for the offset branch), so no padded copy of the input is made; the sub-grids of one state are shared by
    every reduction edge leaving it (see ssnas.mixed.SharedInput).
    """

    fast = True

    def __init__(self, c_in: int, c_out: int, affine: bool = True):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.conv_even = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_odd = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def _on_subgrids(self, even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
        return self.bn(torch.cat([pointwise_conv(even, self.conv_even.weight),
                                  pointwise_conv(odd, self.conv_odd.weight)], dim=1))

    def _fast_route(self, x: torch.Tensor) -> bool:
        return self.fast and x.dim() == 4 and x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0

    def forward_shared(self, shared) -> torch.Tensor:
        if not self._fast_route(shared.x):
            return self.forward_after_relu(shared.relu())
        return self._on_subgrids(shared.cut("even"), shared.cut("odd"))

    def forward_after_relu(self, x: torch.Tensor) -> torch.Tensor:
        if self._fast_route(x):
            return self._on_subgrids(even_subgrid(x), odd_subgrid(x))
        odd = x[:, :, 1:, 1:]
        if x.shape[-1] % 2:  # odd sides: pad so both branches land on the same grid
            odd = F.pad(odd, (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv_even(x), self.conv_odd(odd)], dim=1))


class Zero(nn.Module):
    """The `none` op. Mixed ops skip it: w * 0 adds nothing and sends no gradient to the weights."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class AvgPool3x3(nn.AvgPool2d):
    """DARTS's avg_pool_3x3 (padding 1, padding not counted); ``fast`` takes ssnas.fastconv's box sum."""

    fast = True

    def __init__(self, stride: int):
        super().__init__(3, stride=stride, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return avg_pool_3x3(x, self.stride) if self.fast else super().forward(x)


def pool_bn(pool: nn.Module, c: int, with_bn: bool) -> nn.Module:
    # DARTS adds an affine-free BN after pooling inside the supernet, so pools are on the same scale as convs.
    return nn.Sequential(pool, nn.BatchNorm2d(c, affine=False)) if with_bn else pool


def use_fast_kernels(model: nn.Module, on: bool = True) -> None:
    """Switch every op of ``model`` between the fast kernels and the plain torch calls (the reference)."""
    for m in model.modules():
        if hasattr(type(m), "fast"):
            m.fast = on


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
