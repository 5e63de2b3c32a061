"""The exact speed route: the same maths as ssnas.nas, computed faster. One switch, `use_fast_kernels`.

What the route does (each piece is checked against the textbook modules in float64, tests/test_fast_path.py,
test_fanout.py and test_recompute.py):
- `conv`: depthwise convs with cheaper backward passes, dilated convs on parity sub-grids, 1x1 convs as NHWC
  matmuls, the 3x3 average pool as a box sum (`ops` puts them into the candidate ops);
- `shared`: work that depends only on an edge's input (relu, pools, sub-grids) done once per state;
- `mixed`: the mixed op without `none`, with a fused weighted sum;
- `fanout`: every edge leaving a state run as one wide kernel;
- `cell`: the cell's seams (`edge`, `concat`) on that route, and `--recompute-cells` (`recompute`).

The switch swaps each module's class for its speed-route subclass (and back); parameters, buffers and
checkpoints do not change. The route was written and measured on CPUs: `fast_route` says where the loops use it
(on CUDA only when asked for, `--kernels fast`, until benchmarks/gpu.sh has measured it faster than cuDNN there). The loops and `ssnas.arch`'s builders switch it on; ONNX/TorchScript export
switches it off (the route uses custom autograd functions, which exporters do not record).
"""
from __future__ import annotations

from torch import nn

from ssnas.kernels.cell import FastCell, fast_cell_class
from ssnas.kernels.mixed import FAST_MIXED
from ssnas.kernels.ops import FAST_OPS
from ssnas.nas.cell import SearchCell

_FAST = {**FAST_OPS, **FAST_MIXED}
_TEXTBOOK = {fast: textbook for textbook, fast in _FAST.items()}


KERNELS = ("auto", "fast", "textbook")


def fast_route(setting: str, device_type: str) -> bool:
    """Whether the loops use the speed route: `fast`, `textbook`, or `auto`: on the CPU, where it was measured
    (BENCHMARKS.md); not on CUDA, where cuDNN's kernels are assumed faster until a GPU measurement
    (benchmarks/gpu.sh, `--kernels fast` against `--kernels textbook`) shows otherwise."""
    if setting not in KERNELS:
        raise ValueError(f"kernels must be one of {', '.join(KERNELS)}, got {setting!r}")
    return setting == "fast" or (setting == "auto" and device_type == "cpu")


def use_fast_kernels(model: nn.Module, on: bool = True, *, recompute_cells: bool = False) -> nn.Module:
    """Put every op, mixed op and cell of `model` on the exact speed route (`on`) or back on the textbook maths
    of ssnas.nas; `recompute_cells` recomputes each searchable cell in the backward pass instead of storing its
    activations (with `on` off too: the cells then run the textbook ops inside). Returns `model`."""
    for m in model.modules():
        cls = type(m)
        if isinstance(m, FastCell):
            if on or recompute_cells:
                m.recompute_cells = recompute_cells
            else:
                m.__class__ = cls.textbook
                m.__dict__.pop("recompute_cells", None)
        elif (on or recompute_cells) and isinstance(m, SearchCell):
            m.__class__ = fast_cell_class(cls)
            m.recompute_cells = recompute_cells
        elif on and cls in _FAST:
            m.__class__ = _FAST[cls]
        elif not on and cls in _TEXTBOOK:
            m.__class__ = _TEXTBOOK[cls]
    return model


__all__ = ["KERNELS", "fast_route", "use_fast_kernels"]
