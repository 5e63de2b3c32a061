"""`ssnas show SOURCE`: a genotype, its network's size and a run's figures, as text.

SOURCE is anything `ssnas export` takes. For a run folder it also prints what the run recorded: the search's
last epoch (loss, alpha entropy, the margins the derived cell rests on, share of parameter-free ops, and a warning
when the cell is barely decided), the retrain's network and kNN monitor, and every `ssnas eval` result
(eval-*.json). Nodes are named as in every picture and file (DARTS: inputs c_{k-2}, c_{k-1}, nodes 2, 3, ...).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssnas import registry
from ssnas.arch import build_encoder, load_genotype, resolved_network, size_words
from ssnas.commands.flags import add_flags, flag_overrides
from ssnas.config import apply_overrides, check_tree
from ssnas.errors import UserError
from ssnas.nas.diagnostics import undecided_warning
from ssnas.nas.genotype import genotype_ops
from ssnas.nas.network import NetworkConfig, describe

ORDER = 45


def cell_lines(genotype: Any) -> list[str]:
    """Each cell, one node a line: `node 5 = skip_connect(c_{k-2}) + dil_conv_3x3(2)` (the cell view's names);
    `none` edges are left out of the sum (they add nothing), so a node fed by `none` alone reads `0`."""
    lines = []
    for kind, cell in genotype.cells().items():
        names = cell.names
        if cell.concat:
            lines.append(f"{cell.title or kind + ' cell'} (output = concat of nodes "
                         f"{', '.join(names[s] for s in cell.output)}):")
        else:
            lines.append(f"{kind}: {cell.title}" if cell.title else f"{kind} cell:")
            lines += [f"  node {names[s]} = the cell's input" for s in range(cell.inputs)]
        for node in cell.nodes:
            terms = [f"{e.op}({names[e.source]})" for e in cell.edges if e.target == node and e.op != "none"]
            role = " (the cell's output)" if not cell.concat and node in cell.output else ""
            lines.append(f"  node {names[node]} = {' + '.join(terms) or '0'}{role}")
    return lines


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _last_epoch(folder: Path) -> dict[str, Any] | None:
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
        if row.get("kind") == "epoch":
            rows.append(row)
    return rows[-1] if rows else None


def size_line(genotype: Any, layers: int, init_channels: int, shape: tuple[int, int, int]) -> str:
    """Parameters and mult-adds of the evaluation network built from the genotype (PyTorch's FLOP counter);
    a size of 0 is the space's own network (DARTS 20 cells / 36 channels, NAS-Bench-201 5 per stage / 16)."""
    cfg = NetworkConfig()
    if layers:
        cfg.layers = layers
    if init_channels:
        cfg.init_channels = init_channels
    cfg = resolved_network(cfg, genotype)
    size = describe(build_encoder(genotype, cfg, shape[0]), shape)
    return (f"network ({size_words(genotype, cfg)}, input {'x'.join(map(str, shape))}): "
            f"{size['params'] / 1e6:.3f}M parameters, {size['flops'] / 2e6:.1f}M mult-adds")


def truth_lines(folder: Path) -> list[str]:
    """With --benchmark: the true accuracy and rank of the final cell per column, and the trajectory."""
    path = folder / "genotypes.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash
    truths = [r.get("truth") or {} for r in rows]
    if not truths or not truths[-1]:
        return []
    last = truths[-1]
    columns = [k[len("true_"):] for k in last if k.startswith("true_") and k != "true_missing"]
    parts = [f"{c} {last['true_' + c]:.2f} (rank {last['rank_' + c]}, top {last['top_pct_' + c]:.2f}%)"
             for c in columns]
    out = ["benchmark (final cell): " + ", ".join(parts)] if parts else ["benchmark: the final cell is not in the table"]
    if columns:
        first = columns[0]
        curve = " ".join(f"{t['true_' + first]:.2f}" if "true_" + first in t else "-" for t in truths)
        out.append(f"benchmark {first} per epoch: {curve}")
    return out


def run_lines(folder: Path) -> list[str]:
    """What a run folder recorded: search epochs, the retrain's network and monitor, evaluations."""
    lines = []
    config = _read_json(folder / "config.json") or {}
    last = _last_epoch(folder)
    if (folder / "alphas.json").is_file() or "supernet" in config:
        epochs = config.get("optim", {}).get("epochs", "?")
        line = f"search: {config.get('objective', {}).get('name', '?')} on {config.get('data', {}).get('dataset', '?')}"
        if last is not None:
            line += f", epoch {last.get('epoch', '?')}/{epochs}, loss {last.get('loss', float('nan')):.4f}"
            entropies = [f"{k[len('entropy_'):-len('_norm')]} {v:.3f}" for k, v in last.items()
                         if k.startswith("entropy_") and k.endswith("_norm")]
            if entropies:
                line += f", alpha entropy {' / '.join(entropies)} of uniform"
            if "op_margin_median" in last:
                line += (f", op margin {last['op_margin_median']:.2g} (median; smallest "
                         f"{last['op_margin_min']:.2g})")
            if "edge_margin_min" in last:
                line += f", edge margin {last['edge_margin_min']:.2g}"
            if "parameter_free_share" in last:
                line += f", parameter-free ops {100 * last['parameter_free_share']:.0f}%"
        strategy = config.get("strategy", {}).get("name")
        if strategy:
            line += f"; strategy {strategy}"
        lines.append(line)
        warning = undecided_warning(last) if last is not None else None
        if warning:
            lines.append(f"warning: {warning}")
        lines += truth_lines(folder)
    network = _read_json(folder / "network.json")
    if isinstance(network, dict):
        shape = "x".join(map(str, network.get("input_shape", [])))
        space = (network.get("genotype") or {}).get("space")
        unit = "cells"
        if space:
            unit = registry.space(space).LAYERS_UNIT  # nb201: "cells per stage"
        line = (f"retrain: {config.get('objective', {}).get('name', '?')} on {config.get('data', {}).get('dataset', '?')}, "
                f"{network.get('layers')} {unit}, {network.get('init_channels')} channels, input {shape}: "
                f"{network.get('params', 0) / 1e6:.3f}M parameters, {network.get('flops', 0) / 2e6:.1f}M mult-adds")
        if last is not None:
            epochs = config.get("optim", {}).get("epochs", "?")
            line += f"; epoch {last.get('epoch', '?')}/{epochs}, loss {last.get('loss', float('nan')):.4f}"
            if "knn_top1" in last:
                line += f", kNN monitor top-1 {100 * last['knn_top1']:.2f}%"
        lines.append(line)
    for path in sorted(folder.glob("eval-*.json")):
        record = _read_json(path)
        if not isinstance(record, dict) or "top1" not in record:
            continue
        init = "random init" if record.get("random_init") else f"{record.get('pretrained_epochs', '?')} pretrained epochs"
        lines.append(f"eval {record.get('tag', path.stem[5:])}: top-1 {record['top1']:.2f}% on {record.get('n_test', '?')} "
                     f"{record.get('dataset', '')} test images ({init})")
    return lines


def run(ns: argparse.Namespace) -> int:
    cfg = check_tree(apply_overrides(ShowConfig(), flag_overrides(ns, ShowConfig)))
    folder = Path(ns.source)
    network = _read_json(folder / "network.json") if folder.is_dir() else None
    if isinstance(network, dict) and network.get("genotype") is None and not (folder / "genotype.json").is_file():
        # a retrain of a fixed backbone (resnet18): no genotype, only the run's records
        print("\n".join([f"source: {ns.source}", f"architecture: {network.get('arch')}", *run_lines(folder)]))
        return 0
    genotype = load_genotype(ns.source, cfg.space or None)
    space = registry.space(genotype.space)
    lines = [f"source: {ns.source}", f"space: {genotype.space}"]
    meta = getattr(genotype, "meta", None) or {}
    if meta:
        lines.append("meta: " + ", ".join(f"{k}={v}" for k, v in meta.items()))
    lines += cell_lines(genotype)
    ops = genotype_ops(genotype)
    share = sum(op in space.PARAMETER_FREE for op in ops)
    lines.append(f"parameter-free ops: {share} of {len(ops)} ({100 * share / len(ops):.0f}%)")
    try:
        space.to_nni(genotype)
        lines.append(f"NNI: freezes NNI's {space.NNI_SPACE} space (ssnas export SOURCE --to nni)")
    except UserError as e:
        lines.append(f"NNI: not expressible ({e})")
    is_run = folder.is_dir()
    if cfg.size and not (is_run and (folder / "network.json").is_file()):
        shape = (cfg.in_channels, cfg.image_size, cfg.image_size)
        lines.append(size_line(genotype, cfg.layers, cfg.init_channels, shape))
    if is_run:
        lines += run_lines(folder)
    print("\n".join(lines))
    return 0


@dataclass
class ShowConfig:
    """What `ssnas show` builds to count a network's size."""

    space: str = field(default="", metadata={"help": "search space of the genotype (default: the file's own)"})
    layers: int = field(default=0, metadata={
        "help": "cells of the network whose size is shown (default: the space's own: DARTS 20, NAS-Bench-201 5 per "
                "stage)", "range": "[0, 200]"})
    init_channels: int = field(default=0, metadata={
        "help": "its initial channels (default: the space's own: DARTS 36, NAS-Bench-201 16)", "range": "[0, 1024]"})
    in_channels: int = field(default=3, metadata={"help": "image channels", "choices": (1, 3)})
    image_size: int = field(default=32, metadata={"help": "image side (32: CIFAR)", "range": "[4, 1024]"})
    size: bool = field(default=True, metadata={
        "help": "build the network to count its parameters and FLOPs (--no-size skips it)"})


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="print a genotype, its network's size and a run's results",
                       description="SOURCE: a genotype .json, a search or retrain run folder, an NNI dict file, a "
                                   "genotypes .py file, a published name (DARTS_V1, DARTS_V2), or a NAS-Bench-201 "
                                   "string ('|nor_conv_3x3~0|+...|', quoted for the shell) or a file holding one.")
    p.add_argument("source", help="genotype file, run folder, NNI dict file, published name or NAS-Bench-201 string")
    add_flags(p, ShowConfig)
    p.set_defaults(func=run)
