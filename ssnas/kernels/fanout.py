"""All the edges that leave one state, evaluated as wide kernels: the same maths as one mixed op per edge.

A DARTS cell's state feeds up to 4 edges (and its reduction edges all share one stride). Their conv
candidates apply *different* weights to the *same* input, so the m edges' copies of one candidate are one
conv over m * C channels: the input tiled m times along the channels, the depthwise kernels concatenated, the
1x1 convs as one block-diagonal matrix and the affine-free BNs as one BN over m * C channels (BN is per
channel, so this is exact; each edge's running statistics are written back to its own module). Every
kernel then works on up to 4x wider rows, and there are fewer kernel calls: on this project's CPUs a BN at
C=8 costs 1.8 ns per element against 0.74 at C=32 (BENCHMARKS.md, "The fan-out, alone"). The wide outputs are cut
back into one dense tensor per edge and each edge's weighted sum is ``FastMixedOp``'s own.

Parameters stay in each edge's modules (checkpoints, derivation and the textbook path are unchanged); the
concatenated kernels are rebuilt every forward, which costs a few kilobytes of copies.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssnas.kernels.conv import depthwise_conv, depthwise_conv_on_subgrids, pointwise_conv
from ssnas.kernels.mixed import FastMixedOp, combine
from ssnas.kernels.ops import FastDilConv, FastSepConv
from ssnas.kernels.shared import SharedInput
from ssnas.nas.global_bn import GlobalBatchNorm

_CL = torch.channels_last


class _TileChannels(torch.autograd.Function):
    """(N, C, H, W) -> (N, m*C, H, W), m copies side by side; the gradient sums the m blocks."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, m: int) -> torch.Tensor:
        ctx.m = m
        return torch.cat([x] * m, dim=1)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        n, mc, h, w = g.shape
        c = mc // ctx.m
        nhwc = g.contiguous(memory_format=_CL).permute(0, 2, 3, 1).reshape(n, h, w, ctx.m, c)
        return nhwc.sum(3).permute(0, 3, 1, 2), None


class _SplitChannels(torch.autograd.Function):
    """(N, m*C, H, W) -> m dense channels_last (N, C, H, W) tensors; the gradient is their concatenation
    (autograd's own slices would each scatter into a zero-filled full-size gradient)."""

    @staticmethod
    def forward(ctx, y: torch.Tensor, m: int):
        return tuple(part.contiguous(memory_format=_CL) for part in torch.chunk(y, m, dim=1))

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        return torch.cat([g.contiguous(memory_format=_CL) for g in grads], dim=1), None


def tile_channels(x: torch.Tensor, m: int) -> torch.Tensor:
    return x if m == 1 else _TileChannels.apply(x, m)


def split_channels(y: torch.Tensor, m: int) -> tuple[torch.Tensor, ...]:
    return (y,) if m == 1 else _SplitChannels.apply(y, m)


def wide_batch_norm(y: torch.Tensor, bns: Sequence[nn.BatchNorm2d]) -> torch.Tensor:
    """``torch.cat([bn(part) for bn, part in zip(bns, chunks of y)], 1)`` as one BN call, running statistics
    (and ``num_batches_tracked``) updated on every module exactly as its own forward would."""
    first = bns[0]
    if len(bns) == 1:
        return first(y)
    track = first.track_running_stats
    use_batch_stats = first.training or not track
    mean = var = None
    factor = 0.0
    if track:
        mean = torch.cat([bn.running_mean for bn in bns])
        var = torch.cat([bn.running_var for bn in bns])
        if first.training:
            for bn in bns:
                bn.num_batches_tracked.add_(1)
            # nn.BatchNorm2d: momentum None means a cumulative average, factor 1 / batches seen
            factor = first.momentum if first.momentum is not None else 1.0 / float(first.num_batches_tracked)
    weight = torch.cat([bn.weight for bn in bns]) if first.affine else None
    bias = torch.cat([bn.bias for bn in bns]) if first.affine else None
    batch_norm = first.normalise if isinstance(first, GlobalBatchNorm) else F.batch_norm  # --sync-bn
    out = batch_norm(y, mean, var, weight, bias, use_batch_stats, factor, first.eps)
    if track and first.training:
        with torch.no_grad():
            for bn, m, v in zip(bns, mean.chunk(len(bns)), var.chunk(len(bns))):
                bn.running_mean.copy_(m)
                bn.running_var.copy_(v)
    return out


def _wide_layer(convs: Sequence[FastDilConv], x: torch.Tensor, prepared: torch.Tensor | None = None,
                on_subgrids: bool = False) -> torch.Tensor:
    """One ReLU-free DilConv layer (depthwise, 1x1, BN) of m edges on an input tiled to m * C channels.
    `prepared`: the tiled sub-grid a strided dilated conv reads (ssnas.kernels.conv.depthwise_conv); `on_subgrids`:
    `x` is the tiled parity sub-grid layout, and so is the result."""
    depthwise = torch.cat([conv.depthwise.weight for conv in convs])
    pointwise = torch.block_diag(*[conv.pointwise.weight.flatten(1) for conv in convs])[:, :, None, None]
    if on_subgrids:
        y = depthwise_conv_on_subgrids(x, depthwise)
    else:
        d = convs[0].depthwise
        y = depthwise_conv(x, depthwise, d.stride[0], d.padding[0], d.dilation[0], prepared=prepared)
    return wide_batch_norm(pointwise_conv(y, pointwise), [conv.bn for conv in convs])


def _tiled(shared: SharedInput, kind: str, m: int) -> torch.Tensor:
    """``shared.cut(kind)`` tiled m times along the channels, once per state."""
    return shared.memo(("tiled", kind, m), lambda: tile_channels(shared.cut(kind), m))


def _wide_candidate(ops: Sequence[nn.Module], shared: SharedInput, m: int) -> tuple[torch.Tensor, bool] | None:
    """The m edges' copies of one conv candidate as one (N, m*C, ...) tensor, and whether it is in the parity
    sub-grid layout; None for a candidate that is not a fast SepConv/DilConv."""
    first = ops[0]
    if isinstance(first, FastSepConv) and isinstance(first.first, FastDilConv) and isinstance(first.second, FastDilConv):
        y = _wide_layer([op.first for op in ops], _tiled(shared, "relu", m))
        return _wide_layer([op.second for op in ops], F.relu(y)), False
    if isinstance(first, FastDilConv):
        route = first.route(shared.x)
        if route == "subgrids":
            return _wide_layer(ops, _tiled(shared, "subgrids", m), on_subgrids=True), True
        if route == "even":  # the conv reads only the even sub-grid, which the tiled copy stands in for
            return _wide_layer(ops, shared.x, prepared=_tiled(shared, "even", m)), False
        return _wide_layer(ops, _tiled(shared, "relu", m)), False
    return None


def can_fan_out(edges: Sequence[nn.Module]) -> bool:
    """Whether `edges` (all leaving one state) can be evaluated together: fast mixed ops with one stride and
    the same candidates, among them a conv that runs wide."""
    return (len(edges) > 1 and all(type(e) is FastMixedOp for e in edges)
            and len({(e.stride, tuple(e.primitives)) for e in edges}) == 1
            and any(isinstance(c, (FastSepConv, FastDilConv)) for c in edges[0].candidates))


def fan_out(edges: Sequence[FastMixedOp], weights: torch.Tensor, shared: SharedInput) -> list[torch.Tensor]:
    """``[edge(shared.x, weights[e], shared) for e, edge in enumerate(edges)]``, with every conv candidate run
    once for all edges (see the module docstring). `weights`: (m, ops) softmax weights, one row per edge."""
    m = len(edges)
    live_per_edge = [edge.live_ops(weights[e]) for e, edge in enumerate(edges)]
    wide: dict[int, tuple[tuple[torch.Tensor, ...], bool]] = {}
    for i in sorted({i for live in live_per_edge for i in live}):
        out = _wide_candidate([edge.candidates[i] for edge in edges], shared, m)
        if out is not None:
            wide[i] = (split_channels(out[0], m), out[1])
    results = []
    for e, edge in enumerate(edges):
        normal, on_subgrids = [], []
        for i in live_per_edge[e]:
            if i in wide:
                blocks, sub = wide[i]
                (on_subgrids if sub else normal).append((i, blocks[e]))
            else:
                normal.append((i, edge.run(i, shared)))
        results.append(combine(normal, on_subgrids, weights[e]))
    return results
