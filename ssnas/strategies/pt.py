"""DARTS-PT without labels: perturbation-based selection scored by the objective's own loss.

Wang, Cheng, Chen, Tang, Hsieh, "Rethinking Architecture Selection in Differentiable NAS" (ICLR 2021, Sec. 4,
Algorithm 1): the magnitude of alpha does not say how much the supernet needs an op, so an op is chosen by what
removing it costs. For an edge e and each op o alive on it, set o's weight on e to 0 (the others keep theirs, no
renormalisation) and measure the supernet; keep the op whose removal hurts most, fix the edge to it, fine-tune the
supernet, and go on with the next edge (edges in random order). DARTS-PT measures validation accuracy, which needs
labels; here the measure is the search objective's own loss on fixed held-out batches of the architecture half, so
the selection is label-free with every objective. After the ops, the edges of each node are ranked the same way
(Algorithm 2's topology selection): an edge's importance is the loss increase when it is removed.

`blank` (default) trains the supernet with every alpha fixed at 0, i.e. a uniform weight over the ops alive on each
edge and no architecture step: DARTS-PT's "blank + PT", 93.80% on NAS-Bench-201 CIFAR-10 against 88.11% for PT on a
DARTS-trained supernet (Table 4). With `blank = false` the alphas train as in DARTS until the projections start.

Schedule (scaled from the paper's 100 supernet epochs + 5 fine-tuning epochs per projection): the projections take
the last `tune` epochs per edge of the search; one edge of every cell kind is projected per round, and when the
search is too short for one round per edge, each round projects several.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from ssnas.strategies.base import DecidesEdges, SearchTools, masked_softmax, uniform_weights


@dataclass
class PTOptions:
    blank: bool = field(default=True, metadata={"help": "alphas fixed at 0 (uniform over alive ops, no architecture "
                                                        "step), DARTS-PT's best NB201 setting; false = DARTS alphas"})
    tune: int = field(default=1, metadata={"help": "epochs of fine-tuning between two projections (DARTS-PT: 5)",
                                           "range": "[0, 1000]"})
    score_batches: int = field(default=8, metadata={"help": "held-out batches each perturbation is scored on",
                                                    "range": "[1, 100000]"})


class PT(DecidesEdges):
    name = "pt"
    summary = ("DARTS-PT without labels: keep the op whose removal raises the objective's loss most, edge by edge, "
               "on a blank supernet (Wang et al. 2021)")
    Options = PTOptions

    def __init__(self, opts: PTOptions, supernet: Any, primitives: list[str], epochs: int):
        super().__init__(opts, supernet, primitives, epochs)
        self.trains_alphas = not opts.blank
        edges = max(m.shape[0] for m in self.alive.values())
        rounds = max(1, min(edges, (epochs - 1) // max(opts.tune, 1) + 1 if opts.tune else 1))
        # round r projects edges [r * per_round, (r + 1) * per_round) of each cell kind's random order
        self.per_round = math.ceil(edges / rounds)
        self.project_after = {epochs - 1 - opts.tune * (rounds - 1 - r): r for r in range(rounds)}
        order = torch.Generator().manual_seed(12345 + epochs)
        self.order = {kind: torch.randperm(m.shape[0], generator=order).tolist() for kind, m in self.alive.items()}

    # ---- the forward pass --------------------------------------------------------------------------------
    def op_weights(self, alphas: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.opts.blank:
            return {kind: uniform_weights(self.alive[kind].to(a.device), a) for kind, a in alphas.items()}
        return super().op_weights(alphas)

    def wants_arch_step(self, progress: float) -> bool:
        # with trained alphas, DARTS's steps run until the first projection (a projected edge is fixed)
        return not self.opts.blank and not any(d.any() for d in self.decided.values())

    def stop_reason(self, settled: str | None) -> str | None:
        """The projections take the schedule's last epochs: a blank supernet's derived cell never changes, so the
        DARTS+ rule would stop the search before the first projection."""
        return None

    # ---- projections ---------------------------------------------------------------------------------------
    def after_epoch(self, epoch: int, tools: SearchTools) -> dict[str, Any]:
        round_ = self.project_after.get(epoch)
        if round_ is None:
            return {}
        weights = {k: w.detach() for k, w in self.op_weights(self.supernet.alphas()).items()}
        base = tools.objective_loss(weights, round_, self.opts.score_batches)
        events: dict[str, Any] = {"round": round_ + 1, "base_loss": base, "chosen": {}}
        for kind, order in self.order.items():
            for e in order[round_ * self.per_round:(round_ + 1) * self.per_round]:
                costs = self._removal_costs(weights, kind, e, base, round_, tools)
                best = max(costs, key=costs.get)
                self.decide(kind, e, best)
                events["chosen"][f"{kind} {e}"] = {"op": self.primitives[best],
                                                    "costs": {self.primitives[o]: c for o, c in costs.items()}}
                weights = {k: w.detach() for k, w in self.op_weights(self.supernet.alphas()).items()}
                base = tools.objective_loss(weights, round_, self.opts.score_batches)  # the projected supernet
        tools.say("  DARTS-PT projection {}: {}".format(round_ + 1, ", ".join(
            f"{edge} -> {chosen['op']}" for edge, chosen in events["chosen"].items())))
        if self.all_decided():
            events["edge_importance"] = self._rank_edges(weights, base, round_, tools)
        return events

    def _removal_costs(self, weights: dict[str, torch.Tensor], kind: str, e: int, base: float, round_: int,
                       tools: SearchTools) -> dict[int, float]:
        """Loss increase when each alive op of edge e is given weight 0 (DARTS-PT Algorithm 1, no renormalisation)."""
        costs = {}
        for o in torch.nonzero(self.alive[kind][e]).flatten().tolist():
            if self.alive[kind][e].sum() == 1:
                costs[o] = 0.0
                continue
            perturbed = {k: w.clone() for k, w in weights.items()}
            perturbed[kind][e, o] = 0.0
            costs[o] = tools.objective_loss(perturbed, round_, self.opts.score_batches) - base
        return costs

    def _rank_edges(self, weights: dict[str, torch.Tensor], base: float, round_: int,
                    tools: SearchTools) -> dict[str, list[float]]:
        """Every edge's importance: the loss increase when the edge is removed (DARTS-PT Algorithm 2)."""
        for kind, w in weights.items():
            for e in range(w.shape[0]):
                perturbed = {k: v.clone() for k, v in weights.items()}
                perturbed[kind][e] = 0.0
                self.importance[kind][e] = tools.objective_loss(perturbed, round_, self.opts.score_batches) - base
        return {kind: [round(float(v), 5) for v in imp] for kind, imp in self.importance.items()}

    # ---- the decision ----------------------------------------------------------------------------------------
    def derive_scores(self, alphas: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Decided edges: their op, weighted by the edge's importance (a positive, order-preserving exp) so a space
        that keeps the strongest edges per node ranks them by it; undecided edges: the alive ops' current weights."""
        scores = {}
        for kind, a in alphas.items():
            current = masked_softmax(a.detach().float().cpu(), self.alive[kind])
            if self.opts.blank:
                current = uniform_weights(self.alive[kind], current)
            strength = torch.exp(self.importance[kind] - self.importance[kind].max())
            scores[kind] = self.with_decisions(kind, current, strength)
        return scores
