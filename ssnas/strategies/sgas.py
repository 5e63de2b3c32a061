"""SGAS (Li, Qian, Delgadillo, Mueller, Thabet, Ghanem, CVPR 2020): decide the edges one at a time, greedily.

DARTS decides every edge at once, at the end, from a supernet in which every edge is still a mixture, and the
ranking the mixture gives need not hold for the discrete cell (the discretisation gap; measured for ssnas's
label-free search in BENCHMARKS.md, section 1c). SGAS decides one edge at a time and keeps training the rest:
after a warm-up, every `every` epochs the undecided edge the search is surest of is fixed to its strongest op, so
the remaining alphas train in a supernet that is more and more the discrete cell (Sec. 3.1). The edge is chosen by
Criterion 1 (Sec. 3.2, Eqs. 4-6):

    EI(e) = sum over the non-zero ops o of softmax(alpha_e)_o                        (edge importance)
    SC(e) = 1 - H(p_e) / log(|O| - 1),   p_e = the non-zero ops' weights / EI(e)     (selection certainty)
    S1(e) = normalise(EI)(e) * normalise(SC)(e),   normalise = min-max over the undecided edges (0 when all equal)

and fixed to argmax_o p_e, its strongest non-zero op. The search ends when every edge is decided.

Here the alphas train with beta-DARTS's regulariser (`weight`, the default strategy's; 0 gives SGAS as published,
on plain DARTS), so the edges SGAS decides first are ranked by a search that does not collapse. Schedule: the
authors' code warms up for 9 epochs of 50 and then decides an edge every 5 (`--warmup_dec_epoch 9
--decision_freq 5`); ssnas's label-free NAS-Bench-201 search settles within its first few epochs (BENCHMARKS.md), so
the defaults are a 3-epoch warm-up and one decision per epoch. When the search is too short for one round per
edge, each round decides several. Where a space keeps only some edges per node (DARTS: two), a decided edge's
scores are its op at its edge importance, and the space's discretisation picks the edges from those.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from ssnas.errors import UserError
from ssnas.strategies.base import DecidesEdges, SearchTools, masked_softmax
from ssnas.strategies.beta_darts import ramped_beta_decay

ZERO_OP = "none"  # SGAS's "zero" operation: never chosen, and not part of an edge's importance


@dataclass
class SGASOptions:
    warmup: int = field(default=3, metadata={"help": "epochs of training before the first decision (SGAS code: 9 "
                                                     "of 50)", "range": "[1, 100000]"})
    every: int = field(default=1, metadata={"help": "epochs between two decisions (SGAS code: 5)",
                                            "range": "[1, 100000]"})
    freeze: int = field(default=0, metadata={
        "help": "epochs at the start with the alphas frozen, the weights alone training (PC-DARTS: 15 of 50, DrNAS: "
                "10 of 50); 0 = SGAS as published", "range": "[0, 100000]"})
    weight: float = field(default=50.0, metadata={
        "help": "beta-DARTS's lambda at the end of the search, ramped from 0 (0 = plain DARTS, SGAS as published)",
        "range": "[0, 1e6]"})


def normalise(values: torch.Tensor) -> torch.Tensor:
    """Min-max scaling to [0, 1]; all zeros when every value is the same (SGAS's `normalize`)."""
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 0 else torch.zeros_like(values)


def edge_importance(weights: torch.Tensor, zero: int | None) -> torch.Tensor:
    """EI(e): the total weight of an edge's non-zero ops (SGAS Eq. 4); weights are (edges, ops) softmaxes."""
    return weights.sum(dim=-1) - (weights[:, zero] if zero is not None else 0.0)


def selection_certainty(weights: torch.Tensor, zero: int | None) -> torch.Tensor:
    """SC(e) = 1 - H(p_e) / log(|O| - 1), p_e the non-zero ops' weights renormalised (SGAS Eq. 5); 1 for an edge
    that puts all its non-zero weight on one op, 0 for a uniform one."""
    keep = [o for o in range(weights.shape[1]) if o != zero]
    p = weights[:, keep]
    p = p / p.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    entropy = -(p * p.clamp_min(1e-12).log()).sum(dim=-1)
    return 1.0 - entropy / math.log(len(keep)) if len(keep) > 1 else torch.ones(len(weights))


def decision_scores(weights: torch.Tensor, zero: int | None) -> torch.Tensor:
    """S1(e) = normalise(EI) * normalise(SC) over the edges given (SGAS Criterion 1, Eq. 6)."""
    return normalise(edge_importance(weights, zero)) * normalise(selection_certainty(weights, zero))


class SGAS(DecidesEdges):
    name = "sgas"
    summary = ("SGAS: after a warm-up, fix the edge the search is surest of to its op, one per epoch, and train on "
               "(Li et al. 2020), on beta-DARTS's alphas")
    Options = SGASOptions

    @classmethod
    def check_options(cls, opts: SGASOptions) -> None:
        if opts.freeze >= opts.warmup:
            raise UserError(f"strategy.freeze ({opts.freeze}) must be below strategy.warmup ({opts.warmup}): the "
                            f"alphas need at least one epoch of training before the first decision")

    @classmethod
    def min_epochs(cls, opts: SGASOptions) -> int:
        return opts.warmup  # the warm-up; a search that ends with it decides every edge at its end

    def __init__(self, opts: SGASOptions, supernet: Any, primitives: list[str], epochs: int):
        super().__init__(opts, supernet, primitives, epochs)
        self.zero = self.primitives.index(ZERO_OP) if ZERO_OP in self.primitives else None
        edges = max(m.shape[0] for m in self.alive.values())
        # decisions after epochs warmup, warmup + every, ... up to the last epoch
        rounds = max(1, min(edges, (epochs - opts.warmup) // opts.every + 1))
        self.per_round = math.ceil(edges / rounds)

    def wants_arch_step(self, progress: float) -> bool:
        """No architecture step in the first `freeze` epochs (progress counts steps done over the whole search)."""
        return progress * self.epochs > self.opts.freeze

    def penalty(self, alphas: list[torch.Tensor], progress: float) -> torch.Tensor | None:
        """beta-DARTS's regulariser on the alphas (ssnas.strategies.beta_darts), ramped to `weight`."""
        return ramped_beta_decay(alphas, self.opts.weight, progress)

    def stop_reason(self, settled: str | None) -> str | None:
        """SGAS ends when every edge is decided; the DARTS+ rule would cut the decisions short, so it is ignored."""
        return "SGAS decided every edge" if self.all_decided() else None

    def after_epoch(self, epoch: int, tools: SearchTools) -> dict[str, Any]:
        done = epoch + 1
        if done < self.opts.warmup or (done - self.opts.warmup) % self.opts.every or self.all_decided():
            return {}
        chosen: dict[str, Any] = {}
        for kind, alpha in self.supernet.alphas().items():
            weights = masked_softmax(alpha.detach().float().cpu(), self.alive[kind])
            open_edges = torch.nonzero(~self.decided[kind]).flatten()
            if not len(open_edges):
                continue
            scores = decision_scores(weights[open_edges], self.zero)
            importance = edge_importance(weights[open_edges], self.zero)
            # the last round takes every edge left, so the search ends on schedule
            take = len(open_edges) if done + self.opts.every > self.epochs else min(self.per_round, len(open_edges))
            for rank in scores.argsort(descending=True, stable=True)[:take].tolist():
                e = int(open_edges[rank])
                candidates = weights[e].clone()
                if self.zero is not None:
                    candidates[self.zero] = -1.0
                op = int(candidates.argmax())
                self.decide(kind, e, op)
                self.importance[kind][e] = float(importance[rank])
                chosen[f"{kind} {self.supernet.edge_names[e]}"] = {
                    "op": self.primitives[op], "score": round(float(scores[rank]), 5),
                    "importance": round(float(importance[rank]), 5)}
        left = sum(int((~d).sum()) for d in self.decided.values())
        tools.say("  SGAS decision after epoch {}: {} ({} edge{} left)".format(
            done, ", ".join(f"{edge} -> {c['op']}" for edge, c in chosen.items()), left, "" if left == 1 else "s"))
        return {"decided": chosen, "edges_left": left}

    def derive_scores(self, alphas: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Decided edges: their op at the edge's importance when it was decided; the others: softmax(alpha)."""
        return {kind: self.with_decisions(kind, masked_softmax(a.detach().float().cpu(), self.alive[kind]),
                                          self.importance[kind]) for kind, a in alphas.items()}
