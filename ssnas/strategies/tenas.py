"""TE-NAS (Chen, Gong, Wang, ICLR 2021): training-free, label-free pruning by trainability and expressivity.

"Neural Architecture Search on ImageNet in Four GPU Hours: A Theoretically Inspired Perspective". Two scores of a
network at initialisation, no labels and no training:
- trainability: the condition number kappa = lambda_max / lambda_min of the empirical neural tangent kernel
  Theta = J J^T on a batch, J_i = d(sum_c f_c(x_i)) / d(weights) (Sec. 3.1; lower trains better). As in the authors'
  code (lib/procedures/ntk.py): batch statistics (BN in training mode), gradients of every parameter named
  `weight`, a random linear head of 10 outputs on the features, a batch of 72 augmented images, 3 batches averaged;
- expressivity: the number of distinct ReLU activation patterns over many inputs, i.e. of linear regions the
  network cuts its input space into (Sec. 3.2; higher is better), on a narrow network (1 channel in the code; the
  narrowest each space builds here) over small 3x3 input patches.

Pruning (Algorithm 1): start from the supernet with every op (the code removes `none` first), and in every round
score, for each edge and each op still on it, the network without that op: the relative change of kappa and of
the region count. Ops are ranked by both (the larger the drop in kappa, the earlier it goes; the smaller the loss
of regions, the earlier it goes), the ranks summed, and each edge loses its op with the lowest sum. Rounds repeat
until every edge has one op. On spaces that keep only the strongest edges of each node (DARTS), edges are then
ranked the same way by removing each one. 93.9 +- 0.47% on NAS-Bench-201 CIFAR-10 in the paper (Table 1).

As a strategy, the pruning runs before the first epoch; the search's epochs then train the chosen cell's weights
only (no architecture step), so `--epochs 1` is enough. With `keep` > 1 it is a warm start instead: pruning stops
at `keep` ops per edge and DARTS's architecture steps decide among them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ssnas.kernels import use_fast_kernels
from ssnas.strategies.base import SearchTools, Strategy, uniform_weights

HEAD_OUTPUTS = 10  # the code's classifier on the features (CIFAR-10's classes; no label is ever read)


@dataclass
class TENASOptions:
    keep: int = field(default=1, metadata={
        "help": "ops per edge when pruning stops (1: TE-NAS decides the cell; >1: a warm start, DARTS decides among "
                "the survivors)", "range": "[1, 64]"})
    batch: int = field(default=72, metadata={
        "help": "images per NTK batch (TE-NAS code: 72 on NAS-Bench-201)", "range": "[2, 4096]"})
    repeats: int = field(default=3, metadata={
        "help": "batches each score is averaged over (TE-NAS code: 3)", "range": "[1, 100]"})
    patches: int = field(default=1000, metadata={
        "help": "3x3 input patches for the linear-region count per repeat (TE-NAS code: 3 x 1000)",
        "range": "[2, 1000000]"})
    ntk_channels: int = field(default=3, metadata={
        "help": "init channels of the NTK network, which has the search supernet's depth (TE-NAS code: C = 3, N = 1 "
                "on NB201)", "range": "[1, 256]"})
    drop_none: bool = field(default=True, metadata={"help": "remove `none` before pruning (as the TE-NAS code does)"})


def ntk_condition_number(network: Callable[[torch.Tensor], torch.Tensor], weights: list[torch.Tensor],
                         x: torch.Tensor) -> float:
    """kappa(Theta) for Theta = J J^T, J_i = gradient of sum_c f_c(x_i) over `weights` (TE-NAS Sec. 3.1); batch
    statistics couple the samples, so each row is its own backward pass through the whole batch's graph."""
    out = network(x)
    rows = []
    for i in range(out.shape[0]):
        grads = torch.autograd.grad(out[i].sum(), weights, retain_graph=i + 1 < out.shape[0], allow_unused=True)
        rows.append(torch.cat([g.reshape(-1) for g in grads if g is not None]))
    jacobian = torch.stack(rows).double()
    eigenvalues = torch.linalg.eigvalsh(jacobian @ jacobian.T)
    kappa = float(eigenvalues[-1] / eigenvalues[0])
    return kappa if 0 < kappa < float("inf") else 1e5  # the code's nan_to_num(..., nan=100000)


def activation_patterns(codes: torch.Tensor) -> int:
    """The number of distinct rows of a (samples x units) 0/1 matrix: distinct activation patterns, i.e. linear
    regions hit by the samples (TE-NAS Sec. 3.2)."""
    return int(torch.unique(codes, dim=0).shape[0])


def dense_ranks(values: list[float], descending: bool) -> list[int]:
    """0-based dense ranks (equal values share a rank), as the code ranks rounded scores."""
    order = sorted(set(values), reverse=descending)
    return [order.index(v) for v in values]


class _Probe:
    """A narrow supernet with fixed op weights (1/alive on each edge), scored for kappa and linear regions."""

    def __init__(self, supernet: nn.Module, head_outputs: int):
        self.net = supernet
        self.head = nn.Linear(supernet.feature_dim, head_outputs).to(next(supernet.parameters()).device)
        arch = {id(p) for p in supernet.arch_parameters()}
        self.weights = [p for n, p in list(supernet.named_parameters()) + list(self.head.named_parameters())
                        if "weight" in n and id(p) not in arch]
        self._live: dict[int, bool] = {}
        self._codes: list[torch.Tensor] = []

    def use(self, alive: Mapping[str, torch.Tensor]) -> None:
        like = next(iter(self.net.alphas().values()))
        fixed = {kind: uniform_weights(m.to(like.device), like) for kind, m in alive.items()}
        self.net.op_weighting = lambda alphas: fixed

    def kappa(self, x: torch.Tensor) -> float:
        self.net.train()
        return ntk_condition_number(lambda v: self.head(self.net(v)), self.weights, x)

    @torch.no_grad()
    def regions(self, x: torch.Tensor) -> int:
        """Distinct ReLU patterns over `x`: the inputs of every op that starts with a ReLU and is alive (its op
        weight on its edge is not 0), and the features' sign at the end."""
        hooks = [m.register_forward_pre_hook(self._record_weights) for m in self.net.modules()
                 if hasattr(m, "candidates")]
        hooks += [m.register_forward_pre_hook(self._record_code) for m in self.net.modules()
                  if getattr(type(m), "starts_with_relu", False)]
        self._codes = []
        try:
            self.net.train()
            features = self.net(x)
        finally:
            for h in hooks:
                h.remove()
        return activation_patterns(torch.cat(self._codes + [features > 0], dim=1).to(torch.uint8))

    def _record_weights(self, mixed: nn.Module, args: tuple) -> None:
        for w, op in zip(args[1].tolist(), mixed.candidates):
            for m in op.modules():
                self._live[id(m)] = w != 0.0

    def _record_code(self, op: nn.Module, args: tuple) -> None:
        if self._live.get(id(op), True):
            self._codes.append((args[0] > 0).flatten(1))


class TENAS(Strategy):
    name = "tenas"
    summary = ("TE-NAS: training-free pruning by NTK condition number and linear regions, no labels, before any "
               "training (Chen et al. 2021)")
    Options = TENASOptions
    trains_alphas = False

    def __init__(self, opts: TENASOptions, supernet: Any, primitives: list[str], epochs: int):
        super().__init__(opts, supernet, primitives, epochs)
        self.trains_alphas = opts.keep > 1
        self.edge_rank = {kind: torch.zeros(m.shape[0]) for kind, m in self.alive.items()}

    def before_search(self, tools: SearchTools) -> dict[str, Any]:
        o = self.opts
        if o.drop_none and "none" in self.primitives:
            for m in self.alive.values():
                m[:, self.primitives.index("none")] = False
        rounds = []
        round_ = 0
        while max(int(m.sum(dim=1).max()) for m in self.alive.values()) > o.keep:
            round_ += 1
            started = time.perf_counter()
            rounds.append(self._prune_round(tools, round_))
            pruned = ", ".join(f"{edge}: {op}" for edge, op in rounds[-1]["pruned"].items())
            tools.say(f"  TE-NAS round {round_} ({time.perf_counter() - started:.0f} s): pruned {pruned}")
        if o.keep == 1:
            rounds.append({"edges": self._rank_edges(tools, round_ + 1)})
        return {"rounds": rounds, "alive": self.alive_ops()}

    def _scores(self, tools: SearchTools, round_: int, candidates: list[tuple[str, int, int | None]]
                ) -> list[tuple[float, float]]:
        """(relative drop of kappa, relative loss of regions) for each candidate removal (kind, edge, op or None for
        the whole edge), averaged over the repeats; one fresh narrow network per round, as in the code."""
        with torch.random.fork_rng(devices=[]):  # the probes' initialisation leaves the search's RNG untouched
            torch.manual_seed(round_)
            return self._measure_all(tools, round_, candidates)

    def _measure_all(self, tools: SearchTools, round_: int, candidates: list[tuple[str, int, int | None]]
                     ) -> list[tuple[float, float]]:
        # the NTK network on the exact fast route (removed ops are skipped there); the thin one stays textbook,
        # where every op is a module whose input the activation patterns are read from
        ntk = _Probe(use_fast_kernels(tools.build_supernet(self.opts.ntk_channels)), HEAD_OUTPUTS)
        thin = _Probe(_narrowest(tools), HEAD_OUTPUTS)
        batches = [tools.views(self.opts.batch, 100 * round_ + r) for r in range(self.opts.repeats)]
        patch_sets = [_patches(tools.views(self.opts.patches, 100 * round_ + 50 + r)) for r in range(self.opts.repeats)]

        def measure(alive: Mapping[str, torch.Tensor]) -> tuple[list[float], list[int]]:
            ntk.use(alive)
            thin.use(alive)
            return [ntk.kappa(x) for x in batches], [thin.regions(p) for p in patch_sets]

        base_k, base_r = measure(self.alive)
        out = []
        for kind, e, op in candidates:
            alive = {k: m.clone() for k, m in self.alive.items()}
            if op is None:
                alive[kind][e] = False
                alive[kind][e, self._stand_in()] = True  # a removed edge carries `none` (zero)
            else:
                alive[kind][e, op] = False
            kappa, regions = measure(alive)
            out.append((sum((b - k) / b for b, k in zip(base_k, kappa)) / len(kappa),
                        sum((b - r) / b for b, r in zip(base_r, regions)) / len(regions)))
        return out

    def _stand_in(self) -> int:
        return self.primitives.index("none") if "none" in self.primitives else 0

    def _prune_round(self, tools: SearchTools, round_: int) -> dict[str, Any]:
        candidates = [(kind, e, o) for kind, m in self.alive.items() for e in range(m.shape[0])
                      if m[e].sum() > self.opts.keep for o in torch.nonzero(m[e]).flatten().tolist()]
        tools.say(f"  TE-NAS round {round_}: scoring {len(candidates)} networks, each with one op removed (NTK "
                  f"condition number on {self.opts.repeats} x {self.opts.batch} images, linear regions)")
        scores = self._scores(tools, round_, candidates)
        # the larger the drop of kappa without the op, the earlier it goes; the smaller the loss of regions too
        ranks = [a + b for a, b in zip(dense_ranks([round(s[0], 3) for s in scores], descending=True),
                                       dense_ranks([round(s[1], 3) for s in scores], descending=False))]
        pruned: dict[tuple[str, int], str] = {}
        for i in sorted(range(len(candidates)), key=lambda i: ranks[i]):
            kind, e, o = candidates[i]
            if (kind, e) not in pruned:
                self.remove(kind, e, o)
                pruned[(kind, e)] = self.primitives[o]
        return {"round": round_, "pruned": {f"{k} {e}": op for (k, e), op in pruned.items()}}

    def _rank_edges(self, tools: SearchTools, round_: int) -> dict[str, list[int]]:
        """Every edge scored by removing it, ranked as the ops are; the strongest edges rank highest."""
        candidates = [(kind, e, None) for kind, m in self.alive.items() for e in range(m.shape[0])]
        scores = self._scores(tools, round_, candidates)
        ranks = [a + b for a, b in zip(dense_ranks([round(s[0], 3) for s in scores], descending=True),
                                       dense_ranks([round(s[1], 3) for s in scores], descending=False))]
        for (kind, e, _), r in zip(candidates, ranks):
            self.edge_rank[kind][e] = r  # high rank sum = removing it hurts = keep it
        return {kind: [int(v) for v in r] for kind, r in self.edge_rank.items()}

    def needs_training(self) -> bool:
        """With `keep` = 1 the pruning has decided every edge before the first step: nothing is left to train."""
        return self.opts.keep > 1

    def op_weights(self, alphas: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.opts.keep > 1:
            return super().op_weights(alphas)
        return {kind: uniform_weights(self.alive[kind].to(a.device), a) for kind, a in alphas.items()}

    def derive_scores(self, alphas: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.opts.keep > 1:
            return super().derive_scores(alphas)
        return {kind: self.alive[kind].float() * (1.0 + self.edge_rank[kind]).unsqueeze(1) for kind in alphas}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "edge_rank": {k: v.clone() for k, v in self.edge_rank.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.edge_rank = {k: v.clone() for k, v in state["edge_rank"].items()}


def _narrowest(tools: SearchTools) -> nn.Module:
    """The thinnest supernet the space builds: 1 channel (TE-NAS's), or 2 where the space needs even widths."""
    try:
        return tools.build_supernet(1)
    except ValueError:
        return tools.build_supernet(2)


def _patches(views: torch.Tensor) -> torch.Tensor:
    """A random 3x3 crop of each view (TE-NAS counts linear regions on 3x3 crops of training images)."""
    n, _, h, w = views.shape
    g = torch.Generator().manual_seed(n)
    i = torch.randint(0, h - 2, (n,), generator=g).tolist()
    j = torch.randint(0, w - 2, (n,), generator=g).tolist()
    return torch.stack([views[k, :, i[k]:i[k] + 3, j[k]:j[k] + 3] for k in range(n)])
