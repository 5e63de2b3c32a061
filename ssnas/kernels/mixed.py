"""The mixed op of ssnas.nas.mixed, computed exactly but faster (same outputs and gradients as the textbook
sum, up to float summation order; tests/test_fast_path.py checks them in float64):

- the `none` op contributes w * 0 = 0 and passes no gradient to any weight, so it is never run; its
  softmax weight still takes part in the normalisation, which is where its alpha gets its gradient;
- work that only depends on the edge's input is done once per input state (ssnas.kernels.shared.SharedInput),
  pools included: they have no weights, so every edge leaving a state computes the same tensor (each edge's
  BN still ends with its own running statistics);
- on CPU, a candidate whose softmax weight is exactly 0 (an underflowed softmax) is skipped too: w * y = 0
  and every gradient through it is multiplied by w = 0. (Its BN's running statistics, which the search's
  training-mode BN never reads, are then not updated for that step.)
- on CPU the weighted sum is one fused autograd node (`weighted_sum`): one pass to add, one dot product per
  candidate for the alphas' gradient, instead of a multiply, an add and a reduction per candidate;
- dilated candidates that run on the parity sub-grids are summed there and converted back once.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ssnas.kernels.conv import from_subgrids, grad_wanted
from ssnas.kernels.shared import SharedInput
from ssnas.nas.mixed import MixedOp, PartialMixedOp

_CL = torch.channels_last


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
        grad_w = torch.stack([_inner(g, y) for y in ys]) if grad_wanted(ctx, 0) else None
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


def combine(terms: Sequence[tuple[int, torch.Tensor]], on_subgrids: Sequence[tuple[int, torch.Tensor]],
            weights: torch.Tensor) -> torch.Tensor:
    """sum of weights[i] * y over (i, y) in both lists; the `on_subgrids` outputs are summed in the parity
    sub-grid layout (ssnas.kernels.conv.to_subgrids) and converted back once."""
    out = None
    if terms:
        out = weighted_sum([y for _, y in terms], weights[[i for i, _ in terms]])
    if on_subgrids:
        y = from_subgrids(weighted_sum([y for _, y in on_subgrids], weights[[i for i, _ in on_subgrids]]))
        out = y if out is None else out + y
    assert out is not None, "a mixed op needs at least one op besides 'none'"
    return out


class FastMixedOp(MixedOp):
    """`MixedOp` on the exact speed route (see the module docstring)."""

    # False where an op weight of exactly 0 can still carry a gradient (a straight-through estimator: GDAS with
    # every op's gradient); then only `none` is skipped. Set with `keep_zero_weight_ops`.
    skip_zero_weights: bool = True

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.forward_shared(SharedInput(x), weights)

    def forward_shared(self, shared: SharedInput, weights: torch.Tensor) -> torch.Tensor:
        """The mixed op on ``shared.x``, reusing what other edges leaving that state computed."""
        live = self.live_ops(weights)
        # dilated convs that run on the parity sub-grids are summed there, and converted back once
        on_subgrids: list[tuple[int, torch.Tensor]] = []
        for i in live:
            to_sub = getattr(self.candidates[i], "forward_on_subgrids", None)
            y = to_sub(shared) if to_sub is not None else None
            if y is not None:
                on_subgrids.append((i, y))
        done = {i for i, _ in on_subgrids}
        return combine([(i, self.run(i, shared)) for i in live if i not in done], on_subgrids, weights)

    def live_ops(self, weights: torch.Tensor) -> list[int]:
        """The candidates to run for these softmax weights: all but `none`, and on CPU (where reading the
        weights costs no device sync) all but those whose weight is exactly 0, unless `skip_zero_weights` is off;
        never none at all."""
        live = [i for i, name in enumerate(self.primitives) if name != "none"]
        if weights.device.type != "cpu" or not self.skip_zero_weights:
            return live
        flat = weights.detach().tolist()
        return [i for i in live if flat[i] != 0.0] or live

    def run(self, i: int, shared: SharedInput) -> torch.Tensor:
        """Candidate i on ``shared.x``."""
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


class FastPartialMixedOp(PartialMixedOp):
    """PC-DARTS's partial edge on the speed route: every edge leaving a state searches the same channel slice,
    so the slice (and the work on it) is shared too."""

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.forward_shared(SharedInput(x), weights)

    def forward_shared(self, shared: SharedInput, weights: torch.Tensor) -> torch.Tensor:
        x = shared.x
        part = shared.memo(("partial", self.part),
                           lambda: SharedInput(x[:, :self.part].contiguous(memory_format=_CL)))
        mixed = self.mixed
        searched = mixed.forward_shared(part, weights) if isinstance(mixed, FastMixedOp) else mixed(part.x, weights)
        return self.join(searched, x)


def keep_zero_weight_ops(module: nn.Module) -> None:
    """Run every op of every fast mixed op in `module`, whatever its weight: for op weights whose exact zeros still
    carry a gradient (straight-through estimators), where skipping an op would drop its weight's gradient."""
    for m in module.modules():
        if isinstance(m, FastMixedOp):
            m.skip_zero_weights = False


def _bn_of(op: nn.Module) -> nn.BatchNorm2d | None:
    return op[-1] if isinstance(op, nn.Sequential) and isinstance(op[-1], nn.BatchNorm2d) else None


@torch.no_grad()
def _copy_running_stats(source: nn.BatchNorm2d, target: nn.BatchNorm2d) -> None:
    target.running_mean.copy_(source.running_mean)
    target.running_var.copy_(source.running_var)
    target.num_batches_tracked.copy_(source.num_batches_tracked)


FAST_MIXED = {MixedOp: FastMixedOp, PartialMixedOp: FastPartialMixedOp}
