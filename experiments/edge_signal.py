"""How strongly does a NAS-Bench-201 search's own objective point at an op on one edge? A diagnostic for a run folder.

    python experiments/edge_signal.py runs/nb201-simclr --edge '0->3' --batches 8 --data-root $SSNAS_DATA

It rebuilds the search of RUN from its config.json and checkpoint.pt (the state after its last epoch) and prints,
as JSON lines, the gradient of the search objective's loss (the architecture step's loss: label-free for a
label-free objective) with respect to the edge's alphas, mean and standard error over `--batches` fixed held-out
batches of the architecture half, in two supernets:

- `soft`: the supernet as the search sees it, every edge a softmax mixture of its ops (DARTS Eq. 2);
- `others_derived`: every other edge fixed to the op the run derived (weight 1, the rest 0), only this edge mixed:
  the same weights, one step closer to the discrete cell the run hands over.

A negative component means raising that op's alpha lowers the loss (the op an architecture step would favour).
When every component is within about one standard error of zero, the supernet cannot tell the ops apart on that
edge, and what the search derives there is noise. For a strategy with a penalty on the alphas (beta-DARTS), a last
line gives the size of the penalty's gradient at the run's last epoch, to compare with the objective's. BENCHMARKS.md ("Why seeds disagree") uses it on edge 0->3.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search_spaces import nb201  # noqa: E402
from ssnas.errors import UserError  # noqa: E402
from ssnas.search import Searcher, Tools, restore_search  # noqa: E402


def parse_edge(text: str) -> int:
    names = [f"{i}->{j}" for i, j in nb201.EDGES]
    if text.endswith("-"):  # `--edge 0->3` unquoted: the shell took '>3' as a redirection
        raise UserError(f"--edge {text!r}: quote the edge, --edge '{text}>j' (unquoted, the shell reads > as a "
                        "redirection)")
    if text not in names:
        raise UserError(f"--edge {text!r} is not an edge of the NAS-Bench-201 cell; use one of {', '.join(names)}")
    return names.index(text)


def load_search(run: Path, data_root: str | None) -> tuple[Searcher, Tools, int]:
    """The NAS-Bench-201 search of a run folder after its last epoch (`ssnas.search.restore_search`)."""
    searcher, tools, epochs = restore_search(run, data_root)
    if searcher.cfg.space != "nb201":
        raise UserError(f"{run} searched the {searcher.cfg.space} space; this diagnostic reads NAS-Bench-201 runs only")
    return searcher, tools, epochs


def penalty_gradient(searcher: Searcher, progress: float) -> dict | None:
    """The strategy's penalty on the alphas (beta-DARTS's, ...) at `progress`: the mean size of its gradient per
    alpha, and of the part across each edge's ops (what moves the softmax); None when the strategy has none."""
    alphas = list(searcher.supernet.alphas().values())
    penalty = searcher.strategy.penalty(alphas, progress)
    if penalty is None:
        return None
    grads = torch.autograd.grad(penalty, alphas)
    across = [g - g.mean(-1, keepdim=True) for g in grads]
    return {"progress": round(progress, 4), "mean_abs": round(float(torch.cat([g.flatten() for g in grads]).abs().mean()), 5),
            "across_ops_mean_abs": round(float(torch.cat([g.flatten() for g in across]).abs().mean()), 5)}


def edge_gradient(searcher: Searcher, tools: Tools, edge: int, batches: int, others: str) -> dict:
    """Mean and standard error over the held-out batches of d loss / d alpha on `edge`."""
    alpha = searcher.supernet.alphas()["cell"]
    soft = searcher.supernet.op_weighting
    # the ops of the cell the run derives (its strategy's derivation, not the op weights of one forward pass,
    # which DrNAS samples afresh every time), fixed once
    ops = torch.tensor([nb201.PRIMITIVES.index(op) for op in searcher.supernet.derive().edges])
    derived = F.one_hot(ops, len(nb201.PRIMITIVES))
    mixed = torch.zeros(len(ops), 1, dtype=torch.bool)
    mixed[edge] = True

    def weights(alphas):
        w = soft(alphas)["cell"]
        if others == "others_derived":
            w = torch.where(mixed, w, derived.to(w.dtype))
        return {"cell": w}

    searcher.supernet.op_weighting = weights
    searcher.supernet.train()  # batch statistics, as in the architecture step
    searcher.objective.train()
    grads = []
    try:
        for batch in tools.held_out_batches(0, batches):
            alpha.grad = None
            searcher.loss(batch)["loss"].backward(inputs=[alpha])
            grads.append(alpha.grad[edge].clone())
    finally:
        searcher.supernet.op_weighting = soft
    g = torch.stack(grads)
    se = g.std(0) / len(grads) ** 0.5 if len(grads) > 1 else torch.full_like(g[0], float("nan"))
    return {op: {"mean": round(float(m), 5), "se": round(float(s), 5)}
            for op, m, s in zip(nb201.PRIMITIVES, g.mean(0), se)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a NAS-Bench-201 search run folder (config.json + checkpoint.pt)")
    p.add_argument("--edge", default="0->3", help="the edge, as 'i->j' (default: 0->3, the cell's input to output)")
    p.add_argument("--batches", type=int, default=8, help="held-out batches to average over (at least 2)")
    p.add_argument("--data-root", default=None, help="where the run's dataset is, if not where it was searched")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    try:
        if a.batches < 2:
            raise UserError(f"--batches {a.batches}: a standard error needs at least 2 batches")
        edge = parse_edge(a.edge)
        torch.set_num_threads(a.threads)
        searcher, tools, epochs = load_search(a.run, a.data_root)
        derived = searcher.supernet.derive().to_string()
        for others in ("soft", "others_derived"):
            print(json.dumps({"run": str(a.run), "edge": a.edge, "supernet": others, "derived": derived,
                              "gradient": edge_gradient(searcher, tools, edge, a.batches, others)}), flush=True)
        penalty = penalty_gradient(searcher, epochs / searcher.cfg.optim.epochs)
        if penalty is not None:
            print(json.dumps({"run": str(a.run), "strategy": searcher.cfg.strategy.name, "penalty": penalty}), flush=True)
    except UserError as e:
        print(f"edge_signal: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
