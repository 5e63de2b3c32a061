"""The non-finite guard: a run that diverged stops with one line naming the first bad tensor, before it writes a
checkpoint, so the last checkpoint on disk is always a good one.

Only the loss was checked before, and a loss can stay finite while BatchNorm's running statistics overflow to
infinity (`--lr 1e8`) or half the weights turn NaN. `first_nonfinite` looks at every floating tensor of the
modules (weights, alphas, BatchNorm buffers, an objective's queues and momentum encoders): one sum per tensor as a
screen, then an exact `isfinite` on the tensors the screen flags (a huge but finite tensor can overflow its sum, so
the screen alone would cry wolf). The loops call it every `--check-every` steps and always before a checkpoint.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import torch
from torch import nn

from ssnas.errors import UserError


def named_tensors(modules: Mapping[str, nn.Module]) -> list[tuple[str, torch.Tensor]]:
    """Every parameter and buffer of the modules, named `<module>.<name>`."""
    out = []
    for prefix, module in modules.items():
        out += [(f"{prefix}.{n}", t) for n, t in module.named_parameters()]
        out += [(f"{prefix}.{n}", t) for n, t in module.named_buffers()]
    return out


@torch.no_grad()
def first_nonfinite(tensors: Iterable[tuple[str, torch.Tensor]]) -> tuple[str, str] | None:
    """(name, "NaN" or "infinity") of the first floating tensor holding a non-finite value, or None."""
    floating = [(n, t.detach()) for n, t in tensors if t.is_floating_point() and t.numel()]
    if not floating:
        return None
    screen = torch.stack([t.sum().float() for _, t in floating]).isfinite().cpu()
    if bool(screen.all()):
        return None
    for (name, t), ok in zip(floating, screen.tolist()):
        if not ok and not bool(torch.isfinite(t).all()):
            return name, "NaN" if bool(torch.isnan(t).any()) else "infinity"
    return None


def lower_rates(rates: Mapping[str, float]) -> str:
    """`--lr 0.0025 --arch-lr 3e-05`: each learning rate a tenth of what it was, as flags (a suggestion to print)."""
    return " ".join(f"{flag} {value / 10:.3g}" for flag, value in rates.items())


def diverged(what: str, epoch: int, step: int, out: Path, command: str, rates: Mapping[str, float]) -> UserError:
    """The one-line error of a run that diverged at (epoch, step): what went non-finite, and how to continue."""
    where = f"{what} at epoch {epoch + 1}, step {step + 1}"
    if (Path(out) / "checkpoint.pt").is_file():
        return UserError(f"{where}; the last good checkpoint is kept: continue from it with lower learning rates, "
                         f"e.g. ssnas {command} --resume --out {out} {lower_rates(rates)}")
    return UserError(f"{where}, before any epoch was saved; run again with lower learning rates, e.g. "
                     f"{lower_rates(rates)}")


def check_modules(modules: Mapping[str, nn.Module], epoch: int, step: int, out: Path, command: str,
                  rates: Mapping[str, float]) -> None:
    """Raise `diverged` when a weight, alpha or buffer of the modules holds NaN or infinity."""
    bad = first_nonfinite(named_tensors(modules))
    if bad is not None:
        raise diverged(f"{bad[0]} holds {bad[1]}", epoch, step, out, command, rates)


def check_loss(loss: torch.Tensor, epoch: int, step: int, out: Path, command: str,
               rates: Mapping[str, float]) -> float:
    """The loss as a float; `diverged` when it is NaN or infinite."""
    value = float(loss)
    if value != value or value in (float("inf"), float("-inf")):
        raise diverged(f"the loss became {value}", epoch, step, out, command, rates)
    return value
