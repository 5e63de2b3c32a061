"""Several processes, one run: the plumbing the loops share under torchrun (torch.distributed).

`session(device)` joins the process group torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT): NCCL on CUDA, gloo on CPU. It yields a `Ranks`, the only thing the loops and the objectives see:
its helpers are the identity for a single process, so one code path serves both.

What the helpers do, and why each is exact (same maths as one process on the global batch):
- `rows(n)`: this rank's slice of a global batch of n images (the rank's shard is its slice of what one process
  would take);
- `gather(t)`: every rank's `t` concatenated, with gradients flowing back to each rank's own rows: the backward
  pass sums every rank's gradient for those rows (what torch.distributed.nn.functional.all_gather does, now
  deprecated, and lightly's GatherLayer: an all-reduce of the gathered gradient, then this rank's rows);
- `average_grads(params)` / `average(tensors)`: the all-reduce mean of gradients, in one flat buffer. With a loss
  L_r per rank whose mean over the ranks is the global loss, and collectives whose backward sums over the ranks,
  the mean of the ranks' gradients is the gradient of the global loss;
- `all_reduce_sum(t)`: a sum over the ranks that autograd differentiates (its backward is the same sum of the
  gradients), which global batch norm uses;
- `check_same(tensors)`: whether every rank holds bit-identical tensors (the alphas after each epoch).

Only rank 0 writes files (`is_main`). A rank stopped by torchrun (because another one failed) stops with a one-line
message rather than a traceback.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from ssnas.errors import UserError
from ssnas.runs.settings import resolve_device


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: rank r of `world` processes, on GPU `local_rank` of its node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes checkpoints, logs, TensorBoard and genotypes."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    # ---- data -------------------------------------------------------------------------------------------------
    def rows(self, n: int) -> slice:
        """This rank's rows of a global batch of n images (n a multiple of the world size)."""
        if n % self.world:
            raise ValueError(f"a global batch of {n} does not split over {self.world} ranks")
        per = n // self.world
        return slice(self.rank * per, (self.rank + 1) * per)

    # ---- collectives ------------------------------------------------------------------------------------------
    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """Every rank's `t` (same shape on each), concatenated along dim 0 in rank order; differentiable."""
        return _GatherRows.apply(t, self) if self.active else t

    def gather_data(self, t: torch.Tensor) -> torch.Tensor:
        """`gather` for tensors that need no gradient (labels, instance ids, keys)."""
        if not self.active:
            return t
        import torch.distributed as dist

        parts = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(parts, t.detach().contiguous())
        return torch.cat(parts)

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """The sum of every rank's `t`, differentiable (its gradient is the sum of the ranks' gradients)."""
        return _AllReduceSum.apply(t) if self.active else t

    def average(self, tensors: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """The mean over the ranks of each tensor, in one collective; None stays None (and must be None on every
        rank: a rank whose tensor is None while another's is not raises)."""
        tensors = list(tensors)
        if not self.active:
            return tensors
        import torch.distributed as dist

        present = [t for t in tensors if t is not None]
        like = present[0] if present else torch.zeros(())
        flags = torch.tensor([t is not None for t in tensors], dtype=like.dtype, device=like.device)
        flat = torch.cat([t.detach().reshape(-1).to(like.dtype) for t in present] + [flags])
        dist.all_reduce(flat)
        if not torch.equal(flat[-len(tensors):], flags * self.world):
            raise RuntimeError("the ranks disagree on which parameters have a gradient; they ran different graphs")
        out: list[torch.Tensor | None] = []
        offset = 0
        for t in tensors:
            if t is None:
                out.append(None)
                continue
            out.append(flat[offset:offset + t.numel()].view_as(t).to(t.dtype).div_(self.world))
            offset += t.numel()
        return out

    def average_grads(self, params: Sequence[torch.Tensor]) -> None:
        """Replace every `.grad` by its mean over the ranks (the data-parallel gradient), in place."""
        if not self.active:
            return
        for p, g in zip(params, self.average([p.grad for p in params])):
            if g is not None:
                p.grad.copy_(g)

    def mean_values(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Scalars (a loss and its logged parts) averaged over the ranks, for logging and the finiteness check."""
        if not self.active or not values:
            return values
        keys = list(values)
        means = self.average([values[k].detach().to(torch.float64).reshape(()) for k in keys])
        return dict(zip(keys, means))

    def check_same(self, tensors: Sequence[torch.Tensor], what: str) -> None:
        """Raise unless every rank holds bit-identical `tensors` (compared through a 64-bit fingerprint)."""
        if not self.active:
            return
        mine = fingerprint(tensors).to(tensors[0].device)  # NCCL gathers GPU tensors only
        every = self.gather_data(mine.view(1))
        if not bool((every == mine).all()):
            raise RuntimeError(f"the ranks hold different {what} (fingerprints {every.tolist()}); this is a bug in "
                               f"ssnas's distributed code, please report it")

    def broadcast_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Overwrite every rank's tensors with rank 0's (the start of a run, as DDP does)."""
        if not self.active:
            return
        import torch.distributed as dist

        with torch.no_grad():
            for t in tensors:
                dist.broadcast(t, 0)

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's `obj` (any picklable value, tensors inside included) on every rank."""
        if not self.active:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    # ---- device -----------------------------------------------------------------------------------------------
    def device(self, name: str) -> torch.device:
        """The device of this rank: `auto` and `cuda` mean cuda:LOCAL_RANK under torchrun, else what they mean for
        one process."""
        if not self.active:
            return resolve_device(name)
        if name not in ("auto", "cuda", "cpu"):
            raise UserError(f"--device {name}: under torchrun every rank uses cuda:LOCAL_RANK (or the CPU); pass "
                            f"--device cuda, cpu or auto, and choose GPUs with CUDA_VISIBLE_DEVICES")
        device = resolve_device(name)
        if device.type != "cuda":
            return device
        if self.local_rank >= torch.cuda.device_count():
            raise UserError(f"local rank {self.local_rank} needs cuda:{self.local_rank}, but this node shows "
                            f"{torch.cuda.device_count()} GPU(s); start at most that many processes per node")
        return torch.device("cuda", self.local_rank)


SINGLE = Ranks()


@contextlib.contextmanager
def hold_on_rank0(ranks: Ranks, out: Path, resume: bool, force: bool) -> Iterator[None]:
    """Hold the run's output folder for the `with` block (ssnas.runs.folder.hold: one run per folder, an earlier run
    cleared with --force). Under torchrun rank 0 alone holds it, since it alone writes; the other ranks go on once
    it does, so none reads the folder before --force has cleared it, and stop with rank 0's line if it could not."""
    from ssnas.runs.folder import hold

    if not ranks.active:
        with hold(out, resume, force):
            yield
        return
    with contextlib.ExitStack() as stack:
        error = None
        if ranks.is_main:
            try:
                stack.enter_context(hold(out, resume, force))
            except UserError as e:
                error = str(e)
        error = ranks.broadcast_object(error)
        if error is not None:
            raise UserError(error)
        yield


class _AllReduceSum(torch.autograd.Function):
    """sum over the ranks; the gradient of every rank's input is the sum of the ranks' output gradients (each
    rank's loss depends on every rank's input through the sum)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        out = t.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        g = g.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(g)
        return g


class _GatherRows(torch.autograd.Function):
    """cat of every rank's rows; each rank's loss depends on every rank's rows, so the gradient of this rank's rows
    is the sum over the ranks of their gradients for them (an all-reduce of the gathered gradient, then a slice)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor, ranks: Ranks) -> torch.Tensor:
        ctx.ranks, ctx.n = ranks, t.shape[0]
        return ranks.gather_data(t)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        import torch.distributed as dist

        g = g.contiguous().clone()
        dist.all_reduce(g)
        start = ctx.ranks.rank * ctx.n
        return g[start:start + ctx.n], None


def fingerprint(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """A 64-bit integer that changes with any bit of `tensors` (their bytes, weighted by position)."""
    total = torch.zeros((), dtype=torch.int64)
    for t in tensors:
        raw = t.detach().cpu().contiguous().view(-1).view(torch.uint8).to(torch.int64)
        weights = torch.arange(1, raw.numel() + 1, dtype=torch.int64) % 65_521 + 1
        total = total * 1_000_003 + (raw * weights).sum()
    return total


def torchrun_env() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) from torchrun's environment, or None when not started by it."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return None
    try:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise UserError("RANK, WORLD_SIZE and LOCAL_RANK must be integers; start ssnas with torchrun") from None


@contextlib.contextmanager
def session(device: str = "auto") -> Iterator[Ranks]:
    """The run's `Ranks`: a single process, or (under torchrun with WORLD_SIZE > 1) a joined process group, NCCL
    on CUDA and gloo on CPU, left again on exit."""
    env = torchrun_env()
    if env is None or env[1] <= 1:
        yield SINGLE
        return
    import torch.distributed as dist

    rank, world, local_rank = env
    ranks = Ranks(rank, world, local_rank)
    cuda = ranks.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    previous = signal.signal(signal.SIGTERM, _stopped_by_torchrun)
    try:
        yield ranks
    except RuntimeError as e:  # a collective that lost its peers: another rank died
        if not _lost_peer(e):
            raise
        why = re.sub(r"^\[[^\]]*\]\s*", "", str(e).splitlines()[0])[:100]  # gloo/NCCL prefix a source location
        raise UserError(f"rank {rank} of {world}: another rank stopped ({why}); the last checkpoint is kept, "
                        f"continue with the same torchrun command and --resume") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def _stopped_by_torchrun(signum: int, frame: Any) -> None:
    raise UserError("stopped by torchrun (another rank failed or the job was cancelled); the last checkpoint is kept, "
                    "continue with the same torchrun command and --resume")


def _lost_peer(e: RuntimeError) -> bool:
    import torch.distributed as dist

    text = str(e).lower()
    return isinstance(e, dist.DistError) or any(w in text for w in (
        "connection closed", "connection reset", "broken pipe", "gloo", "nccl", "timed out"))
