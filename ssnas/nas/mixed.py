"""The continuous relaxation of a categorical choice of op (DARTS, Liu et al. 2019, Sec. 2.2, Eq. 2).

    o_bar(x) = sum_o softmax(alpha)_o * o(x)

Exact shortcuts (same outputs and gradients as the plain sum, up to float summation order):
- the `none` op contributes w * 0 = 0 and passes no gradient to any weight, so it is never run; its
  softmax weight still takes part in the normalisation, which is where its alpha gets its gradient;
- work that only depends on the edge's input is done once per *input state*, not once per edge
  (`SharedInput`): ``relu(x)``, which every conv candidate starts with; the pools and their affine-free
  BN, which have no weights and so give the same output on every edge leaving that state; the parity
  sub-grids the dilated convs read. A DARTS cell has 14 edges but only 5 distinct inputs;
- on CPU, a candidate whose softmax weight is exactly 0 (an underflowed softmax) is skipped too: w * y = 0
  and every gradient through it is multiplied by w = 0. (Its BN's running statistics, which the search's
  training-mode BN never reads, are then not updated for that step.)
- on CPU the weighted sum is one fused autograd node (`weighted_sum`): one pass to add, one dot product per
  candidate for the alphas' gradient, instead of a multiply, an add and a reduction per candidate.

The candidate ops themselves run the fast kernels of ssnas.fastconv (see ssnas.ops.use_fast_kernels).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssnas.kernels.conv import _wanted, even_subgrid, from_subgrids, odd_subgrid, to_subgrids
from ssnas.nas.ops import OpFactory, pool_bn

_CL = torch.channels_last


class SharedInput:
    """One input state and what the edges leaving it have computed from it (valid for one forward pass)."""

    def __init__(self, x: torch.Tensor):
        self.x = x
        self._memo: dict[Any, Any] = {}

    def relu(self) -> torch.Tensor:
        return self.memo("relu", lambda: F.relu(self.x))

    def cut(self, kind: str) -> torch.Tensor:
        """``relu(x)`` cut into what a strided or dilated op reads (ssnas.fastconv): "relu" (uncut), "even" or
        "odd" (one parity sub-grid), "subgrids" (all four, as batch entries)."""
        if kind == "relu":
            return self.relu()
        cuts = {"even": even_subgrid, "odd": odd_subgrid, "subgrids": to_subgrids}
        return self.memo(kind, lambda: cuts[kind](self.relu()))

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]


def _inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum(a * b) without materialising a * b when both share a dense layout."""
    if a.dim() == 4 and a.is_contiguous(memory_format=_CL) and b.is_contiguous(memory_format=_CL):
        return torch.dot(a.permute(0, 2, 3, 1).reshape(-1), b.permute(0, 2, 3, 1).reshape(-1))
    if a.is_contiguous() and b.is_contiguous():
        return torch.dot(a.reshape(-1), b.reshape(-1))
    return (a * b).sum()


class _WeightedSum(torch.autograd.Function):
    """sum_i w_i * y_i for a CPU weight vector w (its values are read once, with no device sync)."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, *ys: torch.Tensor) -> torch.Tensor:
        coef = w.detach().tolist()
        out = ys[0] * coef[0]
        for y, c in zip(ys[1:], coef[1:]):
            out.add_(y, alpha=c)
        ctx.save_for_backward(w, *ys)
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        w, *ys = ctx.saved_tensors
        if g.dim() == 4:  # a strided gradient (e.g. a slice of the cell's concat) makes every product below slow
            g = g.contiguous(memory_format=_CL)
        coef = w.detach().tolist()
        grad_w = torch.stack([_inner(g, y) for y in ys]) if _wanted(ctx, 0) else None
        grads_y = [g * c if ctx.needs_input_grad[i + 1] else None for i, c in enumerate(coef)]
        return (grad_w, *grads_y)


def weighted_sum(ys: Sequence[torch.Tensor], w: torch.Tensor) -> torch.Tensor:
    """sum_i w[i] * ys[i]; fused on CPU, plain multiply-adds elsewhere (no host sync on accelerators)."""
    if w.device.type != "cpu" or any(y.dtype != w.dtype for y in ys):
        out = ys[0] * w[0]
        for i in range(1, len(ys)):
            out = out + ys[i] * w[i]
        return out
    return _WeightedSum.apply(w, *ys)


class MixedOp(nn.Module):
    """A weighted sum over candidate ops on one edge. ``fast = False`` runs the textbook sum instead."""

    fast = True

    def __init__(self, primitives: list[str], ops: Mapping[str, OpFactory], channels: int, stride: int,
                 pool_bn_in_search: bool = True):
        super().__init__()
        self.primitives = list(primitives)
        self.stride = stride
        self.candidates = nn.ModuleList()
        self.live: list[int] = []  # indices of the ops that are actually run
        for i, name in enumerate(self.primitives):
            op = ops[name](channels, stride, False)
            if "pool" in name:
                op = pool_bn(op, channels, pool_bn_in_search)
            self.candidates.append(op)
            if name != "none":
                self.live.append(i)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, shared: SharedInput | None = None) -> torch.Tensor:
        """`shared` carries the work other edges leaving the same state have done (see `SharedInput`)."""
        if not self.fast:
            return reference_mixed_forward(self, x, weights)
        shared = shared if shared is not None else SharedInput(x)
        live = self.live_ops(weights)
        # dilated convs that run on the parity sub-grids are summed there, and converted back once
        on_subgrids: list[tuple[int, torch.Tensor]] = []
        for i in live:
            to_sub = getattr(self.candidates[i], "forward_on_subgrids", None)
            y = to_sub(shared) if to_sub is not None else None
            if y is not None:
                on_subgrids.append((i, y))
        done = {i for i, _ in on_subgrids}
        return combine([(i, self._run(i, shared)) for i in live if i not in done], on_subgrids, weights)

    def live_ops(self, weights: torch.Tensor) -> list[int]:
        """The candidates to run for these softmax weights: all but `none`, and on CPU (where reading the
        weights costs no device sync) all but those whose weight is exactly 0; never none at all."""
        if weights.device.type != "cpu":
            return self.live
        flat = weights.detach().tolist()
        return [i for i in self.live if flat[i] != 0.0] or self.live

    def _run(self, i: int, shared: SharedInput) -> torch.Tensor:
        op, name = self.candidates[i], self.primitives[i]
        if hasattr(op, "forward_shared"):
            return op.forward_shared(shared)
        if "pool" not in name:
            return op(shared.x)
        # A pool (and the affine-free BN after it) has no weights: every edge leaving this state computes the
        # same tensor, so the first edge computes it and the others reuse it.
        y, bn = shared.memo(("pool", name, self.stride), lambda: (op(shared.x), _bn_of(op)))
        mine = _bn_of(op)
        if mine is not None and mine is not bn and mine.training and mine.track_running_stats:
            _copy_running_stats(bn, mine)  # as if this edge's BN had seen the batch itself
        return y


def combine(terms: Sequence[tuple[int, torch.Tensor]], on_subgrids: Sequence[tuple[int, torch.Tensor]],
            weights: torch.Tensor) -> torch.Tensor:
    """sum of weights[i] * y over (i, y) in both lists; the `on_subgrids` outputs are summed in the parity
    sub-grid layout (ssnas.fastconv.to_subgrids) and converted back once."""
    out = None
    if terms:
        out = weighted_sum([y for _, y in terms], weights[[i for i, _ in terms]])
    if on_subgrids:
        y = from_subgrids(weighted_sum([y for _, y in on_subgrids], weights[[i for i, _ in on_subgrids]]))
        out = y if out is None else out + y
    assert out is not None, "a mixed op needs at least one op besides 'none'"
    return out


def _bn_of(op: nn.Module) -> nn.BatchNorm2d | None:
    return op[-1] if isinstance(op, nn.Sequential) and isinstance(op[-1], nn.BatchNorm2d) else None


@torch.no_grad()
def _copy_running_stats(source: nn.BatchNorm2d, target: nn.BatchNorm2d) -> None:
    target.running_mean.copy_(source.running_mean)
    target.running_var.copy_(source.running_var)
    target.num_batches_tracked.copy_(source.num_batches_tracked)


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


def reference_mixed_forward(op: MixedOp, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The textbook sum over every candidate, `none` included: the oracle for the fast path's tests."""
    return sum(w * candidate(x) for w, candidate in zip(weights, op.candidates))
