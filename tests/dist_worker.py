"""What tests/test_distributed.py runs under torchrun (`torchrun --nproc-per-node 2 -m tests.dist_worker MODE OUT`),
and, with one process, as the reference it compares with.

- `steps`: for each of CASES, one architecture step and one weight step of a tiny supernet in float64, with BN over
  the global batch (--sync-bn), on a fixed global batch of 2 * PER_RANK real images; writes the averaged losses,
  the alphas' gradients, the updated alphas and weights, and the objective's state (CLSA's queue) (`one_step`).
- `search [STRATEGY]`: a tiny search with --sync-bn (STRATEGY: a name in SEARCH_STRATEGIES, default darts); every
  rank writes the genotype after each epoch, its final alphas and its strategy's alive ops.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

PER_RANK = 4  # images per rank and step; the single-process reference takes the global batch
SEED = 0
# (objective, DARTS order, strategy): the two the issue names, second order, every objective that couples images,
# and the strategies whose arch step differs from DARTS's (beta-DARTS's penalty, DrNAS's Dirichlet sample)
CASES = [("simclr", 1, "darts"), ("supervised", 1, "darts"), ("simclr", 2, "darts"), ("clsa", 1, "darts"),
         ("byol", 1, "darts"), ("imix", 1, "darts"), ("suncet", 1, "darts"), ("simclr", 1, "beta-darts"),
         ("simclr", 2, "drnas")]
# strategies a tiny search runs under torchrun; pt scores every projection by the objective's loss between epochs
SEARCH_STRATEGIES = {"darts": {}, "pt": {"score_batches": 2}}
OBJECTIVE_SETTINGS = {"clsa": {"objective.options": {"queue_size": 16, "aug_times": 2}},
                      "suncet": {"objective.labels_fraction": 0.5}}


def tiny_config(out: Path, objective: str = "simclr", **overrides):
    from tests.conftest import tiny_search_config

    return tiny_search_config(out, **{"objective.name": objective, "run.sync_bn": True, "run.tensorboard": False,
                                      "optim.batch_size": PER_RANK, **overrides})


def _double(batch) -> None:
    batch.views = [v.double() for v in batch.views]
    batch.strong = [v.double() for v in batch.strong]


def one_step(objective: str, order: int, ranks, per_process: int, strategy: str = "darts") -> dict:
    """Build the searcher (float64), then one arch step and one weight step on the first 2 * global images, half-way
    through the search (so that a ramped penalty is on)."""
    from ssnas.data.datasets import load_dataset, visible_labels
    from ssnas.registry import objective as objective_cls
    from ssnas.runs.settings import record_world, seed_everything
    from ssnas.search import Searcher

    cfg = tiny_config(Path("/nonexistent"), objective, **{"optim.order": order, "optim.batch_size": per_process,
                                                          "strategy.name": strategy,
                                                          **OBJECTIVE_SETTINGS.get(objective, {})})
    record_world(cfg, ranks.world)
    train = load_dataset(cfg.data, "train", seed=SEED)
    labels = visible_labels(train, objective_cls(objective).labels, cfg.objective.labels_fraction, SEED)
    seed_everything(SEED)
    mean, std = train.mean_std()
    searcher = Searcher(cfg, train.channels, mean, std, torch.device("cpu"),
                        num_classes=len(train.classes) if labels is not None else 0, ranks=ranks)
    searcher.supernet.double()
    searcher.objective.double()
    g = cfg.run.global_batch_size
    images = train.images
    generator = torch.Generator().manual_seed(SEED)
    index_w, index_a = torch.arange(g), torch.arange(g, 2 * g)
    batch_w = searcher.make_batch(images, index_w, generator, None if labels is None else labels[index_w])
    batch_a = searcher.make_batch(images, index_a, generator, None if labels is None else labels[index_a])
    _double(batch_w)
    _double(batch_a)
    searcher.supernet.train()
    searcher.objective.train()
    arch_loss = searcher.arch_step(batch_w, batch_a, 0.5)
    alpha_grads = [a.grad.detach().clone() for a in searcher.alphas]
    parts = searcher.weight_step(batch_w, 0.5)
    means = ranks.mean_values({"loss": parts["loss"].detach(), "arch_loss": arch_loss})
    return {"loss": float(means["loss"]), "arch_loss": float(means["arch_loss"]),
            "alpha_grads": [g.tolist() for g in alpha_grads],
            "alphas": [a.detach().tolist() for a in searcher.alphas],
            "weights": [w.detach().flatten()[:50].tolist() for w in searcher.weights[:8]],
            "state": {k: v.flatten().tolist() for k, v in searcher.objective.state_dict().items()
                      if k.split(".")[0] in ("queue", "step", "tau")}}


def search_config(out: Path, strategy: str = "darts", **overrides):
    return tiny_config(out, **{"strategy.name": strategy, "strategy.options": SEARCH_STRATEGIES[strategy],
                               **overrides})


def search(out: Path, ranks, strategy: str = "darts") -> dict:
    """A tiny search; what this rank holds at the end: the genotype of every epoch, the alphas' bits and the ops
    its strategy left alive."""
    from ssnas.search import run_search

    result = run_search(search_config(out, strategy), ranks=ranks)
    return {"history": [h["genotype"] for h in result.history],
            "alphas": [a.flatten().tolist() for a in result.alphas],
            "alpha_bytes": [a.numpy().tobytes().hex() for a in result.alphas],
            "alive": result.alive}


def main(argv: list[str]) -> None:
    from ssnas.runs import distributed

    mode, out = argv[0], Path(argv[1])
    with distributed.session("cpu") as ranks:
        if mode == "steps":
            row = {f"{name}-{order}-{strategy}": one_step(name, order, ranks, PER_RANK, strategy)
                   for name, order, strategy in CASES}
        else:
            row = search(out, ranks, *argv[2:])
    (out / f"rank{ranks.rank}.json").write_text(json.dumps(row))


if __name__ == "__main__":
    main(sys.argv[1:])
