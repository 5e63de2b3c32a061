"""Throughput of the hot paths, through the same code the real loops run (not a copy of it).

A search "step" is one architecture step plus one weight step, each on a batch of B images; images/s is
B / seconds-per-step, so every image counts once however many views an objective makes of it (the same
definition as benchmarks/nni_darts_peer.py, so the two are comparable).
"""
from __future__ import annotations

import dataclasses
import os
import platform
import resource
import time
from typing import Any, Callable

import torch

from ssnas import registry
from ssnas.data.augment import ViewMaker, naive_view
from ssnas.data.datasets import load_dataset, visible_labels
from ssnas.kernels import use_fast_kernels
from ssnas.retrain import Pretrainer, validate
from ssnas.runs import threads as thread_settings
from ssnas.errors import UserError
from ssnas.runs.distributed import SINGLE, Ranks
from ssnas.runs.settings import record_world, seed_everything
from ssnas.search import Searcher, validate as validate_search


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _environment(device: torch.device) -> dict[str, Any]:
    return {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""), "gomp_spincount": os.environ.get("GOMP_SPINCOUNT", ""),
            "cpu_count": os.cpu_count(), "machine": platform.machine()}


def check_counts(steps: int, warmup: int, bench_subset: int) -> None:
    """The bench's own numbers (its config is checked by the loop's `validate`)."""
    for name, value, low in (("--steps", steps, 1), ("--warmup", warmup, 0), ("--bench-subset", bench_subset, 1)):
        if not low <= value <= 1_000_000:
            raise UserError(f"{name} must be in [{low}, 1000000], got {value}")


def _bench_data(cfg, bench_subset: int, ranks: Ranks = SINGLE) -> tuple[Any, torch.device, Any, torch.Tensor | None]:
    """(cfg with the bench subset, device, training images, the labels the objective may see) for a bench."""
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, subset=cfg.data.subset or bench_subset))
    thread_settings.apply(cfg.run.threads)
    record_world(cfg, ranks.world)
    device = ranks.device(cfg.run.device)
    seed_everything(cfg.run.seed)
    train = load_dataset(cfg.data, "train", seed=cfg.run.seed).in_memory()  # benches time the step, not decoding
    policy = registry.objective(cfg.objective.name).labels
    return cfg, device, train, visible_labels(train, policy, cfg.objective.labels_fraction, cfg.run.seed)


def _seconds_per_step(step: Callable[[Any], Any], steps: int, warmup: int, device: torch.device,
                      prepare: Callable[[int], Any] = lambda i: None) -> float:
    """Mean wall time of `step(prepare(i))` over `steps` calls after `warmup` untimed ones; `prepare` (picking
    the batch's indices) is not timed, and the device is synchronised around each timed call."""
    elapsed = 0.0
    for i in range(warmup + steps):
        args = prepare(i)
        _sync(device)
        t0 = time.perf_counter()
        step(args)
        _sync(device)
        if i >= warmup:
            elapsed += time.perf_counter() - t0
    return elapsed / max(steps, 1)


def _world(cfg, ranks: Ranks) -> dict[str, Any]:
    return {"world_size": ranks.world, "batch_size_per_process": cfg.optim.batch_size,
            "global_batch_size": cfg.run.global_batch_size, "sync_bn": cfg.run.sync_bn}


def bench_search(cfg, steps: int = 10, warmup: int = 3, bench_subset: int = 2048,
                 ranks: Ranks = SINGLE) -> dict[str, Any]:
    """Time `Searcher.train_step` (views + arch step + weight step) on real images. Under torchrun every rank
    takes its shard of a global batch of batch_size x world images; images/s counts the global batch."""
    check_counts(steps, warmup, bench_subset)
    validate_search(cfg)
    cfg, device, train, labels = _bench_data(cfg, bench_subset, ranks)
    labelled = labels is not None
    mean, std = train.mean_std()
    searcher = Searcher(cfg, train.channels, mean, std, device, num_classes=len(train.classes) if labelled else 0,
                        ranks=ranks)
    images = train.images.to(device)
    b = cfg.run.global_batch_size
    generator = torch.Generator(device=device).manual_seed(cfg.run.seed)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.run.seed))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    mine = ranks.rows(b)  # this rank's rows of each global batch

    def halves(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (order[torch.arange(2 * i * b, (2 * i + 1) * b) % len(order)][mine],
                order[torch.arange((2 * i + 1) * b, (2 * i + 2) * b) % len(order)][mine])

    s_per_step = _seconds_per_step(
        lambda idx: searcher.train_step(images[idx[0].to(device)], images[idx[1].to(device)], idx[0], idx[1], labels,
                                        generator, progress=0.0),
        steps, warmup, device, prepare=halves)
    return {"impl": "ssnas", "bench": "search", "objective": cfg.objective.name, "space": cfg.space,
            "order": cfg.optim.order, "layers": cfg.supernet.layers, "init_channels": cfg.supernet.init_channels,
            "batch_size": b, **_world(cfg, ranks), "views": searcher.view_spec.weak + searcher.view_spec.strong,
            "image_size": train.image_size, "dataset": cfg.data.dataset,
            "partial_channels": cfg.supernet.partial_channels, "edge_norm": cfg.supernet.edge_norm,
            "recompute_cells": cfg.supernet.recompute_cells,
            "images_per_s": round(b / s_per_step, 2), "s_per_step": round(s_per_step, 4),
            "peak_mem_mb": round(peak_memory_mb(device), 1), "steps_timed": steps, "warmup_steps": warmup,
            **_environment(device)}


def bench_augment(cfg, steps: int = 10, warmup: int = 3, bench_subset: int = 2048) -> dict[str, Any]:
    """Batched per-sample views against the per-image torchvision pipeline, on the same real images."""
    check_counts(steps, warmup, bench_subset)
    validate_search(cfg)
    cfg, device, train, _ = _bench_data(cfg, bench_subset)
    mean, std = train.mean_std()
    b = cfg.optim.batch_size
    x = train.images[:b].to(device)
    maker = ViewMaker(cfg.augment, mean, std)
    generator = torch.Generator(device=device).manual_seed(0)
    batched = _seconds_per_step(lambda _: maker(x, generator), steps, warmup, device)
    naive = _seconds_per_step(lambda _: naive_view(x.cpu(), cfg.augment, mean, std), steps, warmup, device)
    return {"impl": "ssnas", "bench": "augment", "batch_size": b, "image_size": train.image_size,
            "dataset": cfg.data.dataset, "images_per_s": round(b / batched, 1),
            "naive_images_per_s": round(b / naive, 1), "speedup": round(naive / batched, 2),
            "peak_mem_mb": round(peak_memory_mb(device), 1), **_environment(device)}


def bench_retrain(cfg, steps: int = 10, warmup: int = 3, bench_subset: int = 2048,
                  compare: bool = True, ranks: Ranks = SINGLE) -> dict[str, Any]:
    """Time `Pretrainer.step` (views, forward, backward, optimiser, `after_step`) of `ssnas retrain`; with
    `compare`, also the same steps with the textbook kernels (`use_fast_kernels(encoder, False)`), the naive
    version, in the same process. Under torchrun, as `bench_search`."""
    check_counts(steps, warmup, bench_subset)
    arch = validate(cfg)
    cfg, device, train, labels = _bench_data(cfg, bench_subset, ranks)
    mean, std = train.mean_std()
    trainer = Pretrainer(cfg, arch, train.channels, mean, std, device,
                         num_classes=len(train.classes) if labels is not None else 0, ranks=ranks)
    images = train.images.to(device)
    labels_dev = None if labels is None else labels.to(device)
    b = cfg.run.global_batch_size
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.run.seed))
    generator = torch.Generator(device=device).manual_seed(cfg.run.seed)
    trainer.encoder.train()

    def seconds_per_step() -> float:  # the views are made inside the timed step, as in `ssnas retrain`
        return _seconds_per_step(
            lambda index: trainer.step(trainer.make_batch(images[index], index, generator, labels_dev), trainer.lr, 0.5),
            steps, warmup, device,
            prepare=lambda i: order[torch.arange(i * b, (i + 1) * b) % len(order)][ranks.rows(b)].to(device))

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    fast = seconds_per_step()
    row = {"impl": "ssnas", "bench": "retrain", "arch": cfg.arch, "objective": cfg.objective.name,
           "layers": cfg.network.layers, "init_channels": cfg.network.init_channels, "batch_size": b,
           **_world(cfg, ranks),
           "views": trainer.batches.spec.weak + trainer.batches.spec.strong, "image_size": train.image_size,
           "dataset": cfg.data.dataset, "images_per_s": round(b / fast, 2), "s_per_step": round(fast, 4),
           "peak_mem_mb": round(peak_memory_mb(device), 1), "steps_timed": steps, "warmup_steps": warmup}
    if compare:
        use_fast_kernels(trainer.encoder, False)
        naive = seconds_per_step()
        use_fast_kernels(trainer.encoder, True)
        row.update({"textbook_images_per_s": round(b / naive, 2), "speedup_vs_textbook": round(naive / fast, 2)})
    return {**row, **_environment(device)}
