"""The fan-out (every edge leaving a state as one wide kernel) against one mixed op per edge.

float64, tolerance 1e-10: only the order of float additions differs. The whole-supernet comparison with the
textbook supernet (tests/test_fast_path.py) runs through the fan-out too; these tests pin it down per piece
and check that it is actually taken.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ssnas.kernels import use_fast_kernels
import ssnas.kernels.cell
from ssnas.kernels.fanout import can_fan_out, fan_out, wide_batch_norm
from ssnas.kernels.shared import SharedInput
from ssnas.nas.mixed import MixedOp
from ssnas.nas.ops import DARTS_OPS
from ssnas.nas.space import SpaceConfig
from ssnas.search_spaces.darts import PRIMITIVES, DartsSupernet

CL = torch.channels_last
TIGHT = dict(rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("momentum", [0.1, None])  # None: nn.BatchNorm2d's cumulative average
def test_wide_batch_norm_is_one_bn_per_block_with_each_modules_running_stats(momentum):
    torch.manual_seed(0)
    bns = [nn.BatchNorm2d(3, affine=False, momentum=momentum).double() for _ in range(4)]
    for i, bn in enumerate(bns):  # different starting statistics per module
        bn.running_mean.fill_(0.1 * i)
        bn.running_var.fill_(1.0 + i)
    ref = copy.deepcopy(bns)
    for _ in range(2):  # the second step reads what the first wrote back
        x = torch.randn(5, 12, 4, 4, dtype=torch.float64)
        out = wide_batch_norm(x, bns)
        expected = torch.cat([bn(part) for bn, part in zip(ref, x.chunk(4, 1))], 1)
        torch.testing.assert_close(out, expected, **TIGHT)
    for bn, r in zip(bns, ref):
        torch.testing.assert_close(bn.running_mean, r.running_mean, **TIGHT)
        torch.testing.assert_close(bn.running_var, r.running_var, **TIGHT)
        assert int(bn.num_batches_tracked) == int(r.num_batches_tracked) == 2
    for bn in bns + ref:
        bn.eval()
    torch.testing.assert_close(wide_batch_norm(x, bns), torch.cat([bn(p) for bn, p in zip(ref, x.chunk(4, 1))], 1),
                               **TIGHT)


@pytest.mark.parametrize("stride,size", [(1, 8), (2, 8), (1, 7)])  # 7: odd sides, no sub-grid routes
def test_fan_out_equals_one_mixed_op_per_edge(stride, size):
    torch.manual_seed(0)
    edges = [use_fast_kernels(MixedOp(PRIMITIVES, DARTS_OPS, 4, stride).double()) for _ in range(3)]
    ref = copy.deepcopy(edges)
    assert can_fan_out(edges)
    x = torch.randn(2, 4, size, size, dtype=torch.float64).contiguous(memory_format=CL).requires_grad_()
    alphas = torch.randn(3, len(PRIMITIVES), dtype=torch.float64, requires_grad=True)
    outs = fan_out(edges, alphas.softmax(-1), SharedInput(x))
    shared, weights = SharedInput(x), alphas.softmax(-1)
    expected = [edge.forward_shared(shared, weights[e]) for e, edge in enumerate(ref)]
    g = [torch.randn_like(y) for y in expected]
    params = [p for edge in edges for p in edge.parameters()]
    params_ref = [p for edge in ref for p in edge.parameters()]
    grads = torch.autograd.grad(outs, [x, alphas, *params], g, allow_unused=True)
    grads_ref = torch.autograd.grad(expected, [x, alphas, *params_ref], g, allow_unused=True)
    for a, b in zip(outs, expected):
        torch.testing.assert_close(a, b, **TIGHT)
    for a, b in zip(grads, grads_ref):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, **TIGHT)
    for (name, a), b in zip(nn.ModuleList(edges).named_buffers(), nn.ModuleList(ref).buffers()):
        torch.testing.assert_close(a.double(), b.double(), **TIGHT, msg=name)


def test_the_supernet_fans_out_every_state_with_more_than_one_edge(monkeypatch):
    calls: list[int] = []
    real = ssnas.kernels.cell.fan_out

    def counting(edges, weights, shared):
        calls.append(len(edges))
        return real(edges, weights, shared)

    monkeypatch.setattr(ssnas.kernels.cell, "fan_out", counting)
    net = use_fast_kernels(DartsSupernet(SpaceConfig(layers=2, init_channels=4), 3).to(memory_format=CL))
    net(torch.randn(2, 3, 8, 8).contiguous(memory_format=CL))
    # 4 nodes: states 0..3 feed 4, 4, 3, 2 edges (the last node's input state feeds one: run as a plain edge)
    assert calls == [4, 4, 3, 2] * 2


def test_pc_darts_edges_are_not_fanned_out():
    net = use_fast_kernels(DartsSupernet(SpaceConfig(layers=1, init_channels=8, partial_channels=4), 3))
    assert not can_fan_out(list(net.cells[0].edges[:2]))
