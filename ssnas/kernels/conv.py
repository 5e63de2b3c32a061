"""Exact fast kernels: depthwise convolution with a faster backward on CPU (same maths as ``F.conv2d(..., groups=C)``),
parity sub-grids, 1x1 convs as NHWC matmuls and the 3x3 average pool as a box sum.

Measured on this project's CPUs (torch 2.14.1, channels_last, batch 32, C=8, 32x32; design.md, "Where a
supernet's time goes"): oneDNN's depthwise backward is 5-20x slower than its forward, worst for dilated
kernels. Three exact rewrites avoid its slow paths:

- input gradient of a stride-1 conv = a forward conv of the output gradient with the flipped kernel;
- input and weight gradients are asked for in separate calls (one call for both is slower here);
- a dilation-2 conv is a plain conv on the four parity sub-grids of the input (space-to-batch): output
  pixel (h, w) only reads inputs of the same parity when the padding is even, and a stride-2 dilation-2
  conv reads only the even sub-grid. Plain depthwise kernels are the fast ones.

Only the order of float additions differs from ``F.conv2d``; tests/test_fast_path.py checks outputs and
gradients against it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_CL = torch.channels_last
_conv_backward = torch.ops.aten.convolution_backward


def grad_wanted(ctx, i: int) -> bool:
    """Whether this backward pass uses input i's gradient. ``needs_input_grad`` only says it requires grad:
    DARTS's arch step asks for the alphas' gradients alone, and the conv weights' (the costliest kernel
    here) would be computed and thrown away. Native ops prune these; a custom Function must ask the engine."""
    if not ctx.needs_input_grad[i]:
        return False
    node = ctx.next_functions[i][0]
    if node is None:
        return False
    will_run = getattr(torch._C, "_will_engine_execute_node", None)
    if will_run is None:
        return True
    try:
        return bool(will_run(node))
    except RuntimeError:  # a leaf under autograd.grad(): the engine cannot say, so compute it
        return True


class _DepthwiseConv(torch.autograd.Function):
    """Undilated depthwise conv, odd square kernel, 'same' padding (k-1)/2, stride 1 or 2."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
        k = w.shape[-1]
        pad = (k - 1) // 2
        x = x.contiguous(memory_format=_CL)
        ctx.save_for_backward(x, w)
        ctx.stride = stride
        return F.conv2d(x, w, stride=stride, padding=pad, groups=x.shape[1])

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, w = ctx.saved_tensors
        s = ctx.stride
        c, k = x.shape[1], w.shape[-1]
        pad = (k - 1) // 2
        g = g.contiguous(memory_format=_CL)
        gx = gw = None
        if grad_wanted(ctx, 0):
            if s == 1:  # correlation's adjoint is the correlation with the flipped kernel
                gx = F.conv2d(g, w.flip(-1, -2), padding=pad, groups=c)
            else:
                gx = _conv_backward(g, x, w, None, [s, s], [pad, pad], [1, 1], False, [0, 0], c,
                                    [True, False, False])[0]
        if grad_wanted(ctx, 1):
            gw = _conv_backward(g, x, w, None, [s, s], [pad, pad], [1, 1], False, [0, 0], c,
                                [False, True, False])[1]
        return gx, gw, None


class _Subgrid(torch.autograd.Function):
    """x[:, :, o::2, o::2] as a channels_last tensor, with a channels_last gradient (autograd's own slice
    backward would hand the next op a contiguous NCHW gradient, which takes oneDNN's slow paths)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, offset: int) -> torch.Tensor:
        ctx.shape, ctx.offset = x.shape, offset
        return x[:, :, offset::2, offset::2].contiguous(memory_format=_CL)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        o = ctx.offset
        gx = g.new_zeros(ctx.shape).contiguous(memory_format=_CL)
        gx[:, :, o::2, o::2] = g
        return gx, None


class _ToSubgrids(torch.autograd.Function):
    """(N, C, H, W) -> (4N, C, H/2, W/2): the four parity sub-grids as extra batch entries."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        nhwc = x.permute(0, 2, 3, 1)  # a free view when x is channels_last
        out = nhwc.reshape(n, h // 2, 2, w // 2, 2, c).permute(0, 2, 4, 1, 3, 5).reshape(4 * n, h // 2, w // 2, c)
        return out.permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        return _FromSubgrids.apply(g)


class _FromSubgrids(torch.autograd.Function):
    """The inverse of ``_ToSubgrids``."""

    @staticmethod
    def forward(ctx, y: torch.Tensor) -> torch.Tensor:
        n4, c, h2, w2 = y.shape
        n = n4 // 4
        nhwc = y.permute(0, 2, 3, 1)
        out = nhwc.reshape(n, 2, 2, h2, w2, c).permute(0, 3, 1, 4, 2, 5).reshape(n, 2 * h2, 2 * w2, c)
        return out.permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        return _ToSubgrids.apply(g)


def depthwise_route(shape: torch.Size, k: int, kh: int, stride: int, padding: int, dilation: int) -> str:
    """Which exact rewrite ``depthwise_conv`` takes for an input of `shape` and a k x kh kernel:
    "plain" (undilated kernel), "even" (stride-2 dilation-2: the even sub-grid), "subgrids" (stride-1
    dilation-2: the four parity sub-grids) or "torch" (anything else: ``F.conv2d`` itself)."""
    same = padding == dilation * (k - 1) // 2
    if not (same and k % 2 == 1 and kh == k and stride in (1, 2) and dilation in (1, 2)):
        return "torch"
    if dilation == 1:
        return "plain"
    if stride == 2:
        return "even"
    if shape[-1] % 2 or shape[-2] % 2 or (k - 1) % 2:
        return "torch"
    return "subgrids"


def even_subgrid(x: torch.Tensor) -> torch.Tensor:
    """``x[:, :, ::2, ::2]``, channels_last in value and gradient; what a stride-2 dilation-2 conv and a stride-2
    1x1 conv read."""
    return _Subgrid.apply(x, 0)


def odd_subgrid(x: torch.Tensor) -> torch.Tensor:
    """``x[:, :, 1::2, 1::2]``: what the second branch of a factorized reduction reads on even-sided maps."""
    return _Subgrid.apply(x, 1)


def to_subgrids(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (4N, C, H/2, W/2), the parity sub-grids a stride-1 dilation-2 conv reads. Every
    dilated conv on the same input reads the same sub-grids, so callers may compute them once."""
    return _ToSubgrids.apply(x)


def depthwise_conv(x: torch.Tensor, w: torch.Tensor, stride: int, padding: int, dilation: int,
                   prepared: torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation, groups=C)``, faster backward.

    Takes the fast route for the DARTS shapes (odd square kernel, 'same' padding, dilation 1 or 2,
    stride 1 or 2, even sides when dilated) and falls back to ``F.conv2d`` for anything else.
    `prepared` may hand in ``even_subgrid(x)`` or ``to_subgrids(x)`` (whichever the route needs) when
    another conv on the same input has already computed it.
    """
    k = w.shape[-1]
    route = depthwise_route(x.shape, k, w.shape[-2], stride, padding, dilation)
    if route == "torch":
        return F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation, groups=x.shape[1])
    if route == "plain":
        return _DepthwiseConv.apply(x, w, stride)
    if route == "even":  # only the even sub-grid is read; its own conv is undilated and stride 1
        return _DepthwiseConv.apply(even_subgrid(x) if prepared is None else prepared, w, 1)
    subgrids = to_subgrids(x) if prepared is None else prepared
    return from_subgrids(depthwise_conv_on_subgrids(subgrids, w))


def depthwise_conv_on_subgrids(subgrids: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """A stride-1 dilation-2 depthwise conv, still in the sub-grid layout of ``to_subgrids``: per-pixel and
    per-channel ops that follow (1x1 conv, BN, weighted sums) may stay there too."""
    return _DepthwiseConv.apply(subgrids, w, 1)


def from_subgrids(y: torch.Tensor) -> torch.Tensor:
    """The inverse of ``to_subgrids``."""
    return _FromSubgrids.apply(y)


def pointwise_conv(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """A bias-free 1x1 conv as a matmul over the channels of the NHWC view (free for channels_last)."""
    if w.shape[-2:] != (1, 1) or not x.is_contiguous(memory_format=_CL):
        return F.conv2d(x, w)
    return F.linear(x.permute(0, 2, 3, 1), w.flatten(1)).permute(0, 3, 1, 2)


class _SumPoolAvg(torch.autograd.Function):
    """3x3 stride-1 average pool without the padding in the count: a 3x3 box sum (a depthwise conv with a
    kernel of ones, whose forward kernel is fast) divided by the number of in-image pixels. The box sum is
    its own adjoint, so the backward is the same conv of g / count."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, inv_count: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        ones = x.new_ones(c, 1, 3, 3)
        ctx.save_for_backward(inv_count)
        return F.conv2d(x.contiguous(memory_format=_CL), ones, padding=1, groups=c) * inv_count

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (inv_count,) = ctx.saved_tensors
        c = g.shape[1]
        gx = (g * inv_count).contiguous(memory_format=_CL)
        return F.conv2d(gx, g.new_ones(c, 1, 3, 3), padding=1, groups=c), None


def avg_pool_3x3(x: torch.Tensor, stride: int) -> torch.Tensor:
    """``F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)``; stride 1 takes the box-sum route."""
    if stride != 1:
        return F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)
    h, w = x.shape[-2:]
    ones = x.new_ones(1, 1, h, w)
    inv_count = 1.0 / F.conv2d(ones, x.new_ones(1, 1, 3, 3), padding=1)  # in-image pixels under each window
    return _SumPoolAvg.apply(x, inv_count)
