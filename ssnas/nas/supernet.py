"""The supernet: an encoder (images -> features) whose edges are mixed ops, with architecture parameters
beside its weights (DARTS, Liu et al. 2019, Sec. 2.2).

The seam for search strategies: `op_weights()` is the one place where architecture parameters become the
per-edge op weights of a forward pass (DARTS: softmax(alpha), Eq. 2), and `derive_scores()` what the
discretisation ranks; a space turns those scores into a genotype (`genotype_from_scores` of the space contract).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ssnas.nas.network import global_pool


class Supernet(nn.Module):
    """Base class of every space's supernet. A subclass sets `feature_dim`, `primitives` (the op names, in alpha
    column order) and `edge_names` (row names, 'j->i'), and implements `alphas`, `derive` and `forward_maps`
    (the last feature map; `forward` pools it globally)."""

    feature_dim: int
    primitives: list[str]
    edge_names: list[str]
    # DARTS-'s auxiliary skip weight on stride-1 edges (Chu et al. 2021), set by the search loop each step;
    # 0 = plain DARTS (see ssnas.nas.anticollapse)
    aux_skip: float = 0.0
    # A search strategy's rules (ssnas.strategies), installed by the search loop: how the alphas become op weights,
    # and what the discretisation ranks. None: DARTS's softmax for both.
    op_weighting: Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None
    derivation: Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None

    def alphas(self) -> dict[str, nn.Parameter]:
        """The op-choice parameters by cell kind: (edges, ops) each."""
        raise NotImplementedError

    def arch_parameters(self) -> list[nn.Parameter]:
        """Every architecture parameter, in the order the architecture optimiser holds them."""
        return list(self.alphas().values())

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def op_weights(self) -> dict[str, torch.Tensor]:
        """The op weights of every edge in this forward pass, by cell kind: softmax(alpha) (DARTS Eq. 2), or the
        search strategy's rule."""
        if self.op_weighting is not None:
            return self.op_weighting(self.alphas())
        return {kind: F.softmax(alpha, dim=-1) for kind, alpha in self.alphas().items()}

    def derive_scores(self) -> dict[str, torch.Tensor]:
        """What the discretisation ranks, by cell kind, (edges, ops): softmax(alpha) (DARTS Sec. 2.4), or the
        search strategy's rule."""
        if self.derivation is not None:
            return self.derivation(self.alphas())
        return {kind: F.softmax(alpha.detach(), dim=-1) for kind, alpha in self.alphas().items()}

    def derive(self) -> Any:
        """The discrete genotype: the space's `genotype_from_scores(self.derive_scores())`."""
        raise NotImplementedError

    def probs(self) -> dict[str, dict[str, dict[str, float]]]:
        """Each edge's op distribution for the logs, {cell kind: {edge name: {op: prob}}}: what the derivation
        ranks, normalised per edge. softmax(alpha) for DARTS; a strategy's ops removed get 0, and an edge it has
        decided is one-hot (so the alpha-entropy diagnostics see what the strategy decided, not stale alphas)."""
        out = {}
        for kind, scores in self.derive_scores().items():
            p = scores.detach().float().cpu().clamp_min(0)
            p = p / p.sum(dim=-1, keepdim=True).clamp_min(1e-30)
            out[kind] = {name: {op: float(p[e, o]) for o, op in enumerate(self.primitives)}
                         for e, name in enumerate(self.edge_names)}
        return out

    def forward_maps(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """The last feature map [B, feature_dim, h, w], before the global pooling. Objectives that look at space
        (ConRec's decoder and attention pooling, a masked-patch predictor) read it through
        `ssnas.training.heads.feature_maps`."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features [B, feature_dim]: `forward_maps` averaged over space."""
        return global_pool(self.forward_maps(x))
