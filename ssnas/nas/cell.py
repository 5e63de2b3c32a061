"""What every searchable cell shares: a DAG of mixed ops (DARTS, Liu et al. 2019, Sec. 2.1).

A cell holds `edges` (one mixed op per edge) and `sources` (the state each edge reads), and its `forward`
(written by its space, as the paper writes it) runs edge k with `self.edge(k, states, weights)` and joins
states with `self.concat`. Those two methods are the seam of the exact speed route: `ssnas.kernels` replaces
them (every edge leaving a state run at once, shared work, dense gradients) without changing a number.
"""
from __future__ import annotations

from functools import reduce
from operator import add
from typing import Sequence

import torch
from torch import nn


class SearchCell(nn.Module):
    """Base class of a supernet's cells; subclasses set `edges` and `sources` and write `forward`."""

    edges: nn.ModuleList
    sources: list[int]  # sources[k]: the state edge k reads

    def edge(self, k: int, states: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        """Edge k on its source state, with its row of op weights."""
        return self.edges[k](states[self.sources[k]], weights[k])

    def concat(self, states: Sequence[torch.Tensor]) -> torch.Tensor:
        """The channel concatenation of `states` (a DARTS cell's output)."""
        return torch.cat(list(states), dim=1)


def total(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """t0 + t1 + ..., left to right (a node's sum of its incoming edges; unlike `sum`, no leading 0 + t0)."""
    return reduce(add, tensors)
