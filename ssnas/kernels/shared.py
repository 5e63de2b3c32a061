"""Work that depends only on an edge's input, done once per *state* instead of once per edge.

A DARTS cell has 14 edges but only 5 distinct inputs. Every conv candidate starts with ``relu(x)``; the pools
and their affine-free BN have no weights, so every edge leaving a state computes the same tensor; the dilated
convs and factorized reductions read the same parity sub-grids. `SharedInput` holds them for one forward pass.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from ssnas.kernels.conv import even_subgrid, odd_subgrid, to_subgrids


class SharedInput:
    """One input state and what the edges leaving it have computed from it (valid for one forward pass)."""

    def __init__(self, x: torch.Tensor):
        self.x = x
        self._memo: dict[Any, Any] = {}

    def relu(self) -> torch.Tensor:
        return self.memo("relu", lambda: F.relu(self.x))

    def cut(self, kind: str) -> torch.Tensor:
        """``relu(x)`` cut into what a strided or dilated op reads (ssnas.kernels.conv): "relu" (uncut), "even"
        or "odd" (one parity sub-grid), "subgrids" (all four, as batch entries)."""
        if kind == "relu":
            return self.relu()
        cuts = {"even": even_subgrid, "odd": odd_subgrid, "subgrids": to_subgrids}
        return self.memo(kind, lambda: cuts[kind](self.relu()))

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]
