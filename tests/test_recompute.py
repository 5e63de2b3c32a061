"""`--recompute-cells`: the cells' activations are recomputed in the backward pass instead of stored.

The same outputs, gradients and BN running statistics as without it (float64, 1e-10), and far fewer bytes
held for the backward pass.
"""
from __future__ import annotations

import copy

import pytest
import torch

from ssnas.kernels import use_fast_kernels
from ssnas.nas.space import SpaceConfig
from ssnas.search_spaces.darts import DartsSupernet
from ssnas.search_spaces.nb201 import NB201Supernet
from ssnas.runs import checkpoint

CL = torch.channels_last
TIGHT = dict(rtol=1e-10, atol=1e-10)


def _pair(space, **sizes):
    torch.manual_seed(0)
    plain = use_fast_kernels(space(SpaceConfig(**sizes), 3).double().to(memory_format=CL))
    recomputing = use_fast_kernels(copy.deepcopy(plain), recompute_cells=True)
    return plain, recomputing


def _step(net, x):
    """A loss, and the gradient of every parameter (alphas first), as one search step would take them."""
    out = net(x)
    params = [*net.arch_parameters(), *net.weight_parameters()]
    grads = torch.autograd.grad(out.square().sum(), params, allow_unused=True)
    return out, [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


@pytest.mark.parametrize("space,sizes", [(DartsSupernet, dict(layers=3, init_channels=4)),
                                         (NB201Supernet, dict(layers=1, init_channels=4))])
def test_recomputing_cells_changes_no_output_gradient_or_bn_statistic(space, sizes):
    plain, recomputing = _pair(space, **sizes)
    for _ in range(2):  # the second step reads the running statistics the first one left
        x = torch.randn(4, 3, 8, 8, dtype=torch.float64).contiguous(memory_format=CL)
        out_p, grads_p = _step(plain, x)
        out_r, grads_r = _step(recomputing, x)
        torch.testing.assert_close(out_r, out_p, **TIGHT)
        for a, b in zip(grads_r, grads_p):
            torch.testing.assert_close(a, b, **TIGHT)
    for (name, a), b in zip(recomputing.named_buffers(), plain.buffers()):
        torch.testing.assert_close(a.double(), b.double(), **TIGHT, msg=name)


def _bytes_saved_for_backward(net, x) -> int:
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = net(x)
    out.sum().backward()
    return total[0]


def test_recomputing_cells_holds_only_their_inputs():
    plain, recomputing = _pair(DartsSupernet, layers=3, init_channels=4)
    x = torch.randn(8, 3, 16, 16, dtype=torch.float64).contiguous(memory_format=CL)
    held, held_recomputing = _bytes_saved_for_backward(plain, x), _bytes_saved_for_backward(recomputing, x)
    assert held_recomputing < held / 5, (held, held_recomputing)


def test_eval_and_no_grad_forwards_are_plain_calls():
    plain, recomputing = _pair(DartsSupernet, layers=2, init_channels=4)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64).contiguous(memory_format=CL)
    with torch.no_grad():
        torch.testing.assert_close(recomputing(x), plain(x), **TIGHT)


@pytest.mark.slow
def test_a_search_with_recomputed_cells_ends_with_the_same_alphas(tmp_path, fashion_train, monkeypatch):
    import ssnas.kernels.cell
    from ssnas.search import run_search
    from tests.conftest import tiny_search_config

    calls = []
    real = ssnas.kernels.cell.recomputed
    monkeypatch.setattr(ssnas.kernels.cell, "recomputed", lambda *a: calls.append(1) or real(*a))
    results = {}
    for on in (False, True):
        cfg = tiny_search_config(tmp_path / str(on), **{"supernet.recompute_cells": on})
        assert run_search(cfg, fashion_train).finished
        assert bool(calls) == on  # the flag reached the supernet (and only when set)
        state = checkpoint.load(tmp_path / str(on) / "checkpoint.pt")["searcher"]["supernet"]
        results[on] = state
    for name, value in results[False].items():  # alphas, every weight and every BN buffer
        torch.testing.assert_close(results[True][name], value, rtol=1e-6, atol=1e-7, msg=name)
