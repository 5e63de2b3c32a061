"""The candidate ops of ssnas.nas.ops, computed by the exact fast kernels (ssnas.kernels.conv).

Each class here is a subclass of its textbook op with the same parameters and buffers (so checkpoints, the
derivation and the textbook path are unchanged); `ssnas.kernels.use_fast_kernels` swaps the class of a module.
An op also offers `forward_shared(shared)`, the same result on ``shared.x`` reusing what other edges leaving that
state computed (ssnas.kernels.shared.SharedInput).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ssnas.kernels.conv import (avg_pool_3x3, depthwise_conv, depthwise_conv_on_subgrids, depthwise_route,
                                even_subgrid, odd_subgrid, pointwise_conv)
from ssnas.kernels.shared import SharedInput
from ssnas.nas.ops import AvgPool3x3, DilConv, FactorizedReduce, ReLUConvBN, SepConv


class FastReLUConvBN(ReLUConvBN):
    def forward_shared(self, shared: SharedInput) -> torch.Tensor:
        return self.bn(self.conv(shared.relu()))


class FastDilConv(DilConv):
    """Depthwise and pointwise convs through ssnas.kernels.conv (cheaper backward passes, sub-grid routes)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after_relu(F.relu(x))

    def after_relu(self, x: torch.Tensor) -> torch.Tensor:
        dw = self.depthwise
        y = depthwise_conv(x, dw.weight, dw.stride[0], dw.padding[0], dw.dilation[0])
        return self.bn(pointwise_conv(y, self.pointwise.weight))

    def route(self, x: torch.Tensor) -> str:
        """The depthwise conv's route on `x` (ssnas.kernels.conv.depthwise_route)."""
        dw = self.depthwise
        return depthwise_route(x.shape, dw.kernel_size[0], dw.kernel_size[1], dw.stride[0], dw.padding[0],
                               dw.dilation[0])

    def forward_shared(self, shared: SharedInput) -> torch.Tensor:
        # Both dilated convs of every edge leaving a state read the same parity sub-grids of relu(state):
        # they are cut once per state instead of once per conv.
        route = self.route(shared.x)
        if route not in ("even", "subgrids"):
            return self.after_relu(shared.relu())
        dw = self.depthwise
        y = depthwise_conv(shared.x, dw.weight, dw.stride[0], dw.padding[0], dw.dilation[0], prepared=shared.cut(route))
        return self.bn(pointwise_conv(y, self.pointwise.weight))

    def forward_on_subgrids(self, shared: SharedInput) -> torch.Tensor | None:
        """The op's output in the parity sub-grid layout (ssnas.kernels.conv.to_subgrids), or None when this conv
        does not take that route. The 1x1 conv is per pixel and BN's statistics are over the same set of pixels
        in either layout, so both run on the sub-grids; a mixed op sums its dilated candidates there and
        converts back once."""
        if self.route(shared.x) != "subgrids":
            return None
        y = depthwise_conv_on_subgrids(shared.cut("subgrids"), self.depthwise.weight)
        return self.bn(pointwise_conv(y, self.pointwise.weight))


class FastSepConv(SepConv):
    def forward_shared(self, shared: SharedInput) -> torch.Tensor:
        first = self.first
        y = first.after_relu(shared.relu()) if isinstance(first, FastDilConv) else first(shared.x)
        return self.second(y)


class FastFactorizedReduce(FactorizedReduce):
    """On even-sided maps a stride-2 1x1 conv is a matmul on a sub-grid (the even one, or the odd one for the
    offset branch), so no padded copy of the input is made; the sub-grids of one state are shared by every
    reduction edge leaving it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        if not self._even_sided(x):
            return self._padded(x)
        return self._on_subgrids(even_subgrid(x), odd_subgrid(x))

    def forward_shared(self, shared: SharedInput) -> torch.Tensor:
        if not self._even_sided(shared.x):
            return self._padded(shared.relu())
        return self._on_subgrids(shared.cut("even"), shared.cut("odd"))

    def _padded(self, x: torch.Tensor) -> torch.Tensor:
        """The textbook branches on relu(x) (odd sides: the offset branch is padded onto the same grid)."""
        odd = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1)) if x.shape[-1] % 2 else x[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv_even(x), self.conv_odd(odd)], dim=1))

    def _on_subgrids(self, even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
        return self.bn(torch.cat([pointwise_conv(even, self.conv_even.weight),
                                  pointwise_conv(odd, self.conv_odd.weight)], dim=1))

    @staticmethod
    def _even_sided(x: torch.Tensor) -> bool:
        return x.dim() == 4 and x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0


class FastAvgPool3x3(AvgPool3x3):
    """Stride 1 as a box sum (ssnas.kernels.conv.avg_pool_3x3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return avg_pool_3x3(x, self.stride)


# textbook class -> its fast subclass
FAST_OPS = {ReLUConvBN: FastReLUConvBN, DilConv: FastDilConv, SepConv: FastSepConv,
            FactorizedReduce: FastFactorizedReduce, AvgPool3x3: FastAvgPool3x3}
