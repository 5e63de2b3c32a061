"""Recomputing a cell's activations in the backward pass instead of storing them (activation checkpointing).

A memory-saving option of the fast cells (`--recompute-cells`, ssnas.kernels.cell): only each cell's inputs are kept from the forward pass, and a
cell's inner activations exist during its own backward only. The price is a second forward of every cell.
The outputs and gradients are the same. Recomputing also runs every BN again, so each BN would fold the same
batch into its running statistics twice. Those statistics are put back after the recomputation, so that
they end exactly as without the option.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


@contextmanager
def running_stats_kept(module: nn.Module) -> Iterator[None]:
    """Restore every BN buffer of `module` (running mean, var, batches seen) on exit."""
    saved = [(b, b.detach().clone()) for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             for b in m.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


def recomputed(module: nn.Module, forward: Callable[..., Any], *args: Any) -> Any:
    """``forward(*args)`` (a forward pass of `module`), keeping only `args` for the backward pass (see the module
    docstring)."""
    if not torch.is_grad_enabled():
        return forward(*args)
    first = [True]

    def run(*inputs: Any) -> Any:
        if first[0]:  # the real forward
            first[0] = False
            return forward(*inputs)
        with running_stats_kept(module):  # the recomputation in the backward pass
            return forward(*inputs)

    return checkpoint(run, *args, use_reentrant=False)
