"""A searchable cell (ssnas.nas.cell.SearchCell) on the exact speed route.

The space writes the cell's forward as the paper does; on the speed route its two seams change:
- `edge(k, ...)`: the first time an edge reads a state, every edge leaving that state is run at once, as wide
  kernels (ssnas.kernels.fanout), or else one by one sharing that state's work (ssnas.kernels.shared);
- `concat`: the cell's concatenation hands each state a dense channels_last gradient.
With `recompute_cells`, only the cell's inputs are kept for the backward pass (ssnas.kernels.recompute).

The speed route is a subclass made for each cell class (`fast_cell_class`), the way torch.nn.utils.parametrize
swaps a module's class: parameters, buffers and the textbook forward are the cell's own.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from ssnas.kernels.fanout import can_fan_out, fan_out
from ssnas.kernels.recompute import recomputed
from ssnas.kernels.shared import SharedInput
from ssnas.nas.cell import SearchCell

_CL = torch.channels_last


class _ConcatChannels(torch.autograd.Function):
    """torch.cat(states, dim=1) whose backward hands each state a dense channels_last gradient (autograd's own
    hands out strided slices, which make every op of every edge feeding that state take a slow path)."""

    @staticmethod
    def forward(ctx, *states: torch.Tensor) -> torch.Tensor:
        ctx.sizes = [s.shape[1] for s in states]
        return torch.cat(states, dim=1)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        fmt = _CL if g.dim() == 4 else torch.contiguous_format
        return tuple(part.contiguous(memory_format=fmt) for part in torch.split(g, ctx.sizes, dim=1))


def concat_channels(states: Sequence[torch.Tensor]) -> torch.Tensor:
    return _ConcatChannels.apply(*states)


class _Pass:
    """One forward pass of a cell: each state's shared work, and the outputs of edges already run together."""

    def __init__(self, cell: SearchCell):
        self.cell = cell
        self.shared: dict[int, SharedInput] = {}
        self.ready: dict[int, torch.Tensor] = {}

    def edge(self, k: int, states: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        cell = self.cell
        j = cell.sources[k]
        if j not in self.shared:  # the first reader of state j: run all of j's edges now, if they can run together
            self.shared[j] = SharedInput(states[j])
            leaving = [e for e, source in enumerate(cell.sources) if source == j]
            edges = [cell.edges[e] for e in leaving]
            if can_fan_out(edges):
                self.ready.update(zip(leaving, fan_out(edges, weights[leaving], self.shared[j])))
        if k in self.ready:
            return self.ready.pop(k)
        op = cell.edges[k]
        run_shared = getattr(op, "forward_shared", None)
        return run_shared(self.shared[j], weights[k]) if run_shared else op(states[j], weights[k])


class FastCell(SearchCell):
    """Mixin for a cell class (see the module docstring); `recompute_cells` is set by `use_fast_kernels`."""

    recompute_cells: bool = False
    _pass: _Pass | None = None

    def forward(self, *args: Any) -> Any:
        if self.recompute_cells and self.training:
            return recomputed(self, self._forward, *args)
        return self._forward(*args)

    def _forward(self, *args: Any) -> Any:
        outer, self._pass = self._pass, _Pass(self)
        try:
            return super().forward(*args)
        finally:
            self._pass = outer

    def edge(self, k: int, states: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        return self._pass.edge(k, states, weights)

    def concat(self, states: Sequence[torch.Tensor]) -> torch.Tensor:
        return concat_channels(states)


_CLASSES: dict[type, type] = {}


def fast_cell_class(cls: type) -> type:
    """The speed-route subclass of a cell class (made once per class)."""
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"Fast{cls.__name__}", (FastCell, cls), {"__module__": __name__, "textbook": cls})
    return _CLASSES[cls]
