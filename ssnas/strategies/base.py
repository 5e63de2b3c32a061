"""The contract every search strategy in `ssnas/strategies/` fulfils; the search loop only knows this.

A strategy decides how a differentiable search turns its supernet into a cell. The supernet, the objective and
the bilevel loop stay the same for every strategy; a strategy owns four decisions:

- how the architecture parameters become the op weights of a forward pass (`op_weights`: DARTS's softmax,
  DrNAS's Dirichlet sample, a uniform weight over the ops still alive);
- what is added to the architecture step's loss (`penalty`: beta-DARTS's regulariser), whether there is an
  architecture step at all (`trains_alphas`), and what changes before each step (`before_step`: DARTS-'s
  auxiliary skip);
- what happens between epochs (`before_search`, `after_epoch`: pruning ops, projecting edges) and when the
  search ends (`stop_reason`), with the tools the loop lends it (`SearchTools`: the objective's loss on fixed
  held-out batches, fresh views, a tiny network);
- what the discretisation ranks (`derive_scores`), which the space turns into a genotype.

Ops a strategy has removed are kept in boolean masks (edges x ops per cell kind): a removed op gets weight 0,
so the fast kernels skip it, and it can never be derived. Every strategy works with every objective and both
spaces; tests/test_strategies.py checks the contract for each one.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ssnas.config import apply_overrides, check_tree
from ssnas.errors import UserError


@dataclass
class StrategyConfig:
    # beta-DARTS by default in every space: it does not collapse (NB201 94.36 +- 0.00 with labels, Ye et al. 2022,
    # Table 1; DARTS space 2.53% error, Table 3), costs one logsumexp per step and acts on alpha only, so it sits
    # on any objective; measured label-free in BENCHMARKS.md ("Search quality on NAS-Bench-201")
    name: str = field(default="beta-darts", metadata={
        "flag": "--strategy", "help": "how the search decides: beta-darts (default), darts, darts-minus, drnas, pt, "
                                      "tenas, ... (see `ssnas list`)"})
    options: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "strategy-specific settings, e.g. strategy.weight=50 for beta-darts (see `ssnas list`)"})


@dataclass
class NoOptions:
    """For strategies without settings of their own."""


class SearchTools(Protocol):
    """What the search loop lends a strategy between epochs (all draws are seeded by the run's seed)."""

    def objective_loss(self, op_weights: Mapping[str, torch.Tensor], round_: int, batches: int) -> float:
        """The objective's mean loss over `batches` fixed held-out batches (the architecture half; the same batches
        for every call with the same `round_`), with the supernet's op weights replaced by `op_weights`."""

    def views(self, count: int, round_: int) -> torch.Tensor:
        """`count` augmented views of held-out training images (normalised, NCHW float), fixed per `round_`."""

    def build_supernet(self, init_channels: int) -> nn.Module:
        """A freshly initialised supernet of this space, as deep as the search's, `init_channels` wide (textbook
        maths, for training-free scores)."""

    def say(self, text: str) -> None:
        """A progress line on the search's console (nothing when it is quiet), for work between epochs that takes
        minutes: pruning rounds, projections."""


def masked_softmax(alpha: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """softmax over the ops still alive on each edge; removed ops get exactly 0 (DARTS Eq. 2 on the survivors)."""
    return F.softmax(alpha.masked_fill(~alive, float("-inf")), dim=-1)


def uniform_weights(alive: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """1 / (ops alive) on every alive op of each edge: a supernet whose alphas are fixed at 0 (DARTS-PT's 'blank'
    supernet, TE-NAS's supernet)."""
    w = alive.to(like.dtype)
    return w / w.sum(dim=-1, keepdim=True)


class Strategy:
    """Base class: plain DARTS behaviour. Subclasses set `name`, `summary`, optionally `Options`, and override
    what their method changes."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # one line for `ssnas list`: what it does and where it comes from
    Options: ClassVar[type] = NoOptions
    trains_alphas: ClassVar[bool] = True  # False: never an architecture step (e.g. DARTS-PT's blank supernet)

    @classmethod
    def check(cls, cfg: StrategyConfig) -> Any:
        """Parse and validate the strategy's options before any data loads; returns them."""
        valid = {f.name for f in dataclasses.fields(cls.Options)}
        unknown = sorted(set(cfg.options) - valid)
        if unknown:
            hint = f"valid: {', '.join(sorted(valid))}" if valid else "it takes no options"
            raise UserError(f"strategy {cls.name!r} has no option {unknown[0]!r}; {hint}")
        opts = apply_overrides(cls.Options(), dict(cfg.options), prefix="strategy.")
        check_tree(opts, "strategy.", flags=False)  # each option against its declared range
        cls.check_options(opts)
        return opts

    @classmethod
    def check_options(cls, opts: Any) -> None:
        """Refuse option values the method cannot work with beyond their declared ranges (a one-line UserError)."""

    @classmethod
    def min_epochs(cls, opts: Any) -> int:
        """The shortest search the method's schedule fits (e.g. its warm-up plus one epoch per pruning round)."""
        return 1

    @classmethod
    def check_schedule(cls, opts: Any, epochs: int) -> None:
        """Refuse a search too short for the method's schedule, naming what it needs."""
        need = cls.min_epochs(opts)
        if epochs < need:
            raise UserError(f"strategy {cls.name!r} needs at least {need} epochs with these options, got --epochs "
                            f"{epochs}")

    def __init__(self, opts: Any, supernet: nn.Module, primitives: list[str], epochs: int):
        self.opts = opts
        self.supernet = supernet
        self.primitives = list(primitives)
        self.epochs = epochs
        self.alive = {kind: torch.ones(a.shape, dtype=torch.bool) for kind, a in supernet.alphas().items()}

    # ---- the forward pass --------------------------------------------------------------------------------
    def op_weights(self, alphas: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The op weights of a forward pass, by cell kind (DARTS Eq. 2: softmax of alpha over the alive ops)."""
        return {kind: masked_softmax(a, self.alive[kind].to(a.device)) for kind, a in alphas.items()}

    def before_step(self, supernet: nn.Module, progress: float) -> None:
        """Called before every training step; `progress` runs from 0 to 1 over the search."""

    def wants_arch_step(self, progress: float) -> bool:
        """Whether this training step has an architecture step (before the weight step)."""
        return self.trains_alphas

    def penalty(self, alphas: list[torch.Tensor], progress: float) -> torch.Tensor | None:
        """A term added to the architecture step's loss (it depends on the alphas alone), or None."""
        return None

    def stop_reason(self, settled: str | None) -> str | None:
        """Why the search ends after this epoch, or None to go on. `settled` is the DARTS+ rule's reason when the
        derived cell has settled (--stop-when-stable), else None; by default that rule decides. A strategy whose
        decisions run on a schedule of their own (DARTS-PT, SGAS) ends the search itself."""
        return settled

    def needs_training(self) -> bool:
        """False once a training-free strategy has decided (the loop then writes the cell without training)."""
        return True

    # ---- between epochs ----------------------------------------------------------------------------------
    def before_search(self, tools: SearchTools) -> dict[str, Any]:
        """Called once before the first epoch of a fresh search; returns what to log."""
        return {}

    def after_epoch(self, epoch: int, tools: SearchTools) -> dict[str, Any]:
        """Called after every epoch (0-based `epoch`) before the genotype is derived; returns what to log."""
        return {}

    # ---- the decision ------------------------------------------------------------------------------------
    def derive_scores(self, alphas: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What the space's discretisation ranks, by cell kind: softmax(alpha) over the alive ops (DARTS Sec. 2.4);
        removed ops score 0."""
        return {kind: masked_softmax(a.detach().float().cpu(), self.alive[kind]) for kind, a in alphas.items()}

    def remove(self, kind: str, edge: int, op: int) -> None:
        """Remove one op from one edge (never the last op alive)."""
        if self.alive[kind][edge].sum() <= 1:
            raise RuntimeError(f"{self.name}: cannot remove the last op of edge {edge} of the {kind} cell")
        self.alive[kind][edge, op] = False

    def keep_only(self, kind: str, edge: int, op: int) -> None:
        """Decide an edge: only `op` stays alive."""
        self.alive[kind][edge] = False
        self.alive[kind][edge, op] = True

    def alive_ops(self) -> dict[str, list[list[str]]]:
        """The names of the ops still alive, by cell kind and edge (for logs)."""
        return {kind: [[self.primitives[o] for o in range(m.shape[1]) if m[e, o]] for e in range(m.shape[0])]
                for kind, m in self.alive.items()}

    # ---- state -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"alive": {k: v.clone() for k, v in self.alive.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.alive = {k: v.clone() for k, v in state["alive"].items()}


class DecidesEdges(Strategy):
    """A strategy that fixes edges one by one between epochs (DARTS-PT's projections, SGAS's decisions): which
    edges are decided, and each decided edge's strength, which ranks the decided edges where a space keeps only
    some per node (DARTS: two)."""

    def __init__(self, opts: Any, supernet: nn.Module, primitives: list[str], epochs: int):
        super().__init__(opts, supernet, primitives, epochs)
        self.decided = {kind: torch.zeros(m.shape[0], dtype=torch.bool) for kind, m in self.alive.items()}
        self.importance = {kind: torch.zeros(m.shape[0]) for kind, m in self.alive.items()}

    def decide(self, kind: str, edge: int, op: int) -> None:
        """Fix `edge` of the `kind` cell to `op`: from now on the only op alive there."""
        self.keep_only(kind, edge, op)
        self.decided[kind][edge] = True

    def all_decided(self) -> bool:
        return all(bool(d.all()) for d in self.decided.values())

    def with_decisions(self, kind: str, current: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
        """Scores of the `kind` cell: a decided edge scores its op at the edge's `strength`, the others `current`."""
        decided = self.decided[kind].unsqueeze(1)
        return torch.where(decided, self.alive[kind].float() * strength.unsqueeze(1), current)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "decided": {k: v.clone() for k, v in self.decided.items()},
                "importance": {k: v.clone() for k, v in self.importance.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.decided = {k: v.clone() for k, v in state["decided"].items()}
        self.importance = {k: v.clone() for k, v in state["importance"].items()}


def linear_ramp(final: float, progress: float) -> float:
    """A weight that grows linearly from 0 to `final` over the search."""
    return final * progress


OpWeights = Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]]
