"""The fast kernels and the fast mixed op against plain torch: same outputs and gradients.

Kernels and the whole supernet are compared in float64 (tolerance 1e-10: the same maths, only the order of
additions differs); the supernet also in float32 with rtol 1e-4, atol 5e-5 (float32 summation order over
~40 layers, with dot products in place of multiply-then-sum).
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from ssnas.kernels import use_fast_kernels
from ssnas.kernels.conv import avg_pool_3x3, depthwise_conv, pointwise_conv
from ssnas.nas.space import SpaceConfig
from ssnas.search_spaces.darts import DartsSupernet

CL = torch.channels_last
TIGHT = dict(rtol=1e-10, atol=1e-10)


def _grads(out, inputs, seed=1):
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    return torch.autograd.grad(out, inputs, g.contiguous(memory_format=CL))


@pytest.mark.parametrize("k,dilation,stride", [(3, 1, 1), (5, 1, 1), (3, 2, 1), (5, 2, 1),
                                               (3, 1, 2), (5, 1, 2), (3, 2, 2), (5, 2, 2)])
@pytest.mark.parametrize("size", [8, 7])  # 7: odd sides take the fallback or the ceil-sized subgrid
def test_depthwise_conv_matches_conv2d(k, dilation, stride, size):
    torch.manual_seed(0)
    c = 3
    x = torch.randn(2, c, size, size, dtype=torch.float64).contiguous(memory_format=CL).requires_grad_()
    w = torch.randn(c, 1, k, k, dtype=torch.float64, requires_grad=True)
    pad = dilation * (k - 1) // 2
    ref = F.conv2d(x, w, stride=stride, padding=pad, dilation=dilation, groups=c)
    out = depthwise_conv(x, w, stride, pad, dilation)
    torch.testing.assert_close(out, ref, **TIGHT)
    for a, b in zip(_grads(out, [x, w]), _grads(ref, [x, w])):
        torch.testing.assert_close(a, b, **TIGHT)


@pytest.mark.parametrize("stride", [1, 2])
def test_avg_pool_and_pointwise_match_torch(stride):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64).contiguous(memory_format=CL).requires_grad_()
    ref = F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)
    out = avg_pool_3x3(x, stride)
    torch.testing.assert_close(out, ref, **TIGHT)
    torch.testing.assert_close(_grads(out, [x])[0], _grads(ref, [x])[0], **TIGHT)
    w = torch.randn(5, 3, 1, 1, dtype=torch.float64, requires_grad=True)
    ref, out = F.conv2d(x, w), pointwise_conv(x, w)
    torch.testing.assert_close(out, ref, **TIGHT)
    for a, b in zip(_grads(out, [x, w]), _grads(ref, [x, w])):
        torch.testing.assert_close(a, b, **TIGHT)


F32 = dict(rtol=1e-4, atol=5e-5)


def _supernet_pair(dtype=torch.float32):
    torch.manual_seed(0)
    ref = DartsSupernet(SpaceConfig(layers=3, init_channels=4), 3).to(memory_format=CL).to(dtype)  # textbook
    fast = use_fast_kernels(copy.deepcopy(ref))
    return fast, ref


def _classes(net):
    return {type(m).__module__.split(".")[1] for m in net.modules() if not type(m).__module__.startswith("torch")}


def _loss_and_grads(net, x):
    out = net(x)
    params = [net.alphas_normal, net.alphas_reduce, *net.weight_parameters()]
    grads = torch.autograd.grad(out.square().sum(), params, allow_unused=True)
    # a skipped op's weights get no gradient at all; the textbook path gives them exact zeros
    return out, [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


@pytest.mark.parametrize("dtype,tol", [(torch.float64, TIGHT), (torch.float32, F32)])
def test_whole_supernet_fast_path_matches_the_textbook_supernet(dtype, tol):
    fast, ref = _supernet_pair(dtype)
    # the textbook net runs only ssnas.nas's modules (and the space's), the fast one ssnas.kernels' as well
    assert "kernels" not in _classes(ref) and "kernels" in _classes(fast)
    assert "kernels" not in _classes(use_fast_kernels(copy.deepcopy(fast), False))
    x = torch.randn(4, 3, 16, 16, dtype=dtype).contiguous(memory_format=CL)
    out_f, grads_f = _loss_and_grads(fast, x)
    out_r, grads_r = _loss_and_grads(ref, x)
    torch.testing.assert_close(out_f, out_r, **tol)
    assert len(grads_f) == len(grads_r) > 2
    for a, b in zip(grads_f, grads_r):  # alphas first, then every weight
        torch.testing.assert_close(a, b, **tol)
    # pools shared between the edges leaving a state: every edge's BN still ends with its own running stats
    buffers_r = dict(ref.named_buffers())
    for name, buf in fast.named_buffers():
        torch.testing.assert_close(buf.to(dtype), buffers_r[name].to(dtype), **tol)
    fast.eval(), ref.eval()
    torch.testing.assert_close(fast(x), ref(x), **tol)
    fast.train()
    # the arch step's request (alphas only, as Searcher.arch_step asks), where the fast kernels skip the
    # weights' gradients
    alphas = [fast.alphas_normal, fast.alphas_reduce]
    fast(x).square().sum().backward(inputs=alphas)
    for a, b in zip(alphas, grads_r[:2]):
        torch.testing.assert_close(a.grad, b, **tol)
    assert all(p.grad is None for p in fast.weight_parameters())


def test_an_op_whose_weight_underflows_to_zero_is_skipped_exactly():
    fast, ref = _supernet_pair()
    with torch.no_grad():
        for net in (fast, ref):
            net.alphas_normal[:, 5] = -1e4  # sep_conv_5x5: softmax weight exactly 0 on every normal edge
    assert (F.softmax(fast.alphas_normal, -1)[:, 5] == 0).all()
    x = torch.randn(4, 3, 16, 16).contiguous(memory_format=CL)
    out_f, grads_f = _loss_and_grads(fast, x)
    out_r, grads_r = _loss_and_grads(ref, x)
    torch.testing.assert_close(out_f, out_r, **F32)
    for a, b in zip(grads_f, grads_r):
        torch.testing.assert_close(a, b, **F32)


@pytest.mark.parametrize("size", [8, 7])  # 7: odd sides keep the padded textbook route
def test_factorized_reduce_on_subgrids_matches_the_strided_convs(size):
    from ssnas.kernels.shared import SharedInput
    from ssnas.nas.ops import FactorizedReduce

    torch.manual_seed(0)
    ref = FactorizedReduce(3, 4, affine=False).double()
    fast = use_fast_kernels(copy.deepcopy(ref))
    x = torch.randn(2, 3, size, size, dtype=torch.float64).contiguous(memory_format=CL).requires_grad_()
    params = [x, fast.conv_even.weight, fast.conv_odd.weight]
    for out in (fast(x), fast.forward_shared(SharedInput(x))):
        expected = ref(x)
        torch.testing.assert_close(out, expected, **TIGHT)
        grads_ref = _grads(expected, [x, ref.conv_even.weight, ref.conv_odd.weight])
        for a, b in zip(_grads(out, params), grads_ref):
            torch.testing.assert_close(a, b, **TIGHT)
