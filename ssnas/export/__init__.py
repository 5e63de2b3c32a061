"""`ssnas export`: a genotype (or a retrained network) written in the formats other tools read.

Genotype targets: `json` (our own format), `nni` (the dict that freezes NNI 3.0's version of the space: the
space's `to_nni`), `python` (a self-contained literal in the style of DARTS's cnn/genotypes.py, or the space's own
string, e.g. NAS-Bench-201's), `png`/`svg` (the cells, drawn with matplotlib alone, or with Graphviz on
request), `dot` (Graphviz text), `graphml` (the cells as a networkx graph). Network targets: `onnx` and
`torchscript`, built from a retrain run folder (trained weights) or from a genotype with --layers/
--init-channels (fresh weights; unset sizes are the space's own network), and checked against PyTorch on a batch.

Every space-specific format comes from the space module through its contract (ssnas.nas.space.SearchSpace);
nothing here knows a space by name.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssnas import registry
from ssnas.arch import load_genotype
from ssnas.config import check_tree
from ssnas.errors import UserError
from ssnas.files import atomic_write
from ssnas.export import graph
from ssnas.export.network import build_for_export, export_onnx, export_torchscript
from ssnas.export.python import default_name, to_python

GENOTYPE_TARGETS = ("json", "nni", "python", "png", "svg", "dot", "graphml")
NETWORK_TARGETS = ("onnx", "torchscript")
TARGETS = GENOTYPE_TARGETS + NETWORK_TARGETS
TEXT_TARGETS = ("json", "nni", "python", "dot")  # printed when no --out is given
# ONNX opset 15: every op of these networks (Conv, BatchNormalization, Relu, MaxPool, AveragePool, Pad, Slice,
# Concat, GlobalAveragePool) exists from opset 13 on, but 15 is the first where BatchNormalization has its
# current definition, and onnx's reference evaluator (our fallback checker) computes the older one wrongly
# (measured: 0.2 off on a lone BN at opset 13, 1e-6 at 15). onnxruntime reads opset 15 since 1.10 (2021).
DEFAULT_OPSET = 15


@dataclass
class ExportConfig:
    to: str = field(default="json", metadata={"help": f"target format: {', '.join(TARGETS)}", "choices": TARGETS})
    out: str = field(default="", metadata={"help": "output file (text targets print to stdout when omitted)"})
    name: str = field(default="", metadata={"help": "variable name for --to python (default: from the source)"})
    renderer: str = field(default="matplotlib", metadata={
        "help": "png/svg renderer: matplotlib (no Graphviz needed) or graphviz (needs `dot` on PATH)",
        "choices": ("matplotlib", "graphviz")})
    space: str = field(default="", metadata={"help": "search space of the genotype (default: the file's own)"})
    layers: int = field(default=0, metadata={
        "help": "onnx/torchscript: cells (default: the retrain run's, else the space's: DARTS 20, NAS-Bench-201 5 per stage)",
        "range": "[0, 200]"})
    init_channels: int = field(default=0, metadata={
        "help": "onnx/torchscript: initial channels (default: the retrain run's, else the space's: DARTS 36, NAS-Bench-201 16)",
        "range": "[0, 1024]"})
    in_channels: int = field(default=0, metadata={"help": "onnx/torchscript: image channels (default: the run's, else 3)",
                                                  "choices": (0, 1, 3)})
    image_size: int = field(default=0, metadata={
        "help": "onnx/torchscript: image side; the exported graph is fixed to it (default: the run's, else 32)",
        "range": "[0, 1024]"})
    batch_size: int = field(default=4, metadata={"help": "onnx/torchscript: images in the batch the check runs",
                                                 "range": "[1, 1024]"})
    opset: int = field(default=DEFAULT_OPSET, metadata={
        "help": "ONNX opset (15: read by onnxruntime >= 1.10; torch writes up to 23)", "range": "[13, 23]"})
    tolerance: float = field(default=1e-4, metadata={
        "help": "largest accepted difference between the export and PyTorch, relative to the output's scale",
        "range": "(0, 1]"})
    seed: int = field(default=0, metadata={"help": "seed of fresh weights (no retrain run) and of the check batch",
                                           "range": "[0, 4294967295]"})
    raw_input: bool = field(default=True, metadata={
        "help": "onnx/torchscript: the graph takes raw float32 images in [0, 1] [batch, C, H, W] and normalises "
                "them itself with the run's mean/std; --no-raw-input exports the bare network, which takes "
                "normalised images (mean/std are in the file's metadata either way)"})

    def check(self) -> None:
        if not self.out and self.to not in TEXT_TARGETS:
            raise UserError(f"--to {self.to} writes a binary file; pass --out FILE")


# ---- genotype targets ------------------------------------------------------------------------------------------

def render(genotype: Any, target: str, title: str | None = None, renderer: str = "matplotlib") -> str | bytes:
    """The file contents of a genotype target (text, or bytes for png/svg/graphml)."""
    if target == "json":
        return json.dumps(genotype.to_json(), indent=2) + "\n"
    if target == "nni":
        return json.dumps(registry.space(genotype.space).to_nni(genotype), indent=2) + "\n"
    if target == "python":
        return to_python(genotype, title or "GENOTYPE")
    if target == "dot":
        return graph.to_dot(genotype)
    if target == "graphml":
        import io

        import networkx as nx

        buffer = io.BytesIO()
        nx.write_graphml(graph.genotype_graph(genotype), buffer)
        return buffer.getvalue()
    if target in ("png", "svg"):
        if renderer == "graphviz":
            return _graphviz(graph.to_dot(genotype), target)
        if renderer != "matplotlib":
            raise UserError(f"--renderer must be matplotlib or graphviz, got {renderer!r}")
        return graph.figure_bytes(graph.cells_figure(genotype, title), target)
    raise UserError(f"--to {target!r} is not a genotype target; choose one of {', '.join(GENOTYPE_TARGETS)}")


def _graphviz(dot: str, fmt: str) -> bytes:
    exe = shutil.which("dot")
    if exe is None:
        raise UserError("--renderer graphviz needs Graphviz's `dot` on PATH (apt-get install graphviz); the default "
                        "--renderer matplotlib needs no Graphviz")
    done = subprocess.run([exe, f"-T{fmt}"], input=dot.encode(), capture_output=True, check=False)
    if done.returncode:
        raise UserError(f"Graphviz failed: {done.stderr.decode(errors='replace').strip().splitlines()[0]}")
    return done.stdout


# ---- the command's work --------------------------------------------------------------------------------------

def validate(cfg: ExportConfig) -> None:
    """Every setting against its declared range (ssnas.config.check_tree)."""
    check_tree(cfg)


def export(spec: str, cfg: ExportConfig) -> dict[str, Any]:
    """Write `spec` as `cfg.to`; returns what was done (and the text, for text targets without --out)."""
    validate(cfg)
    out = Path(cfg.out) if cfg.out else None
    if cfg.to in NETWORK_TARGETS:
        built = build_for_export(spec, cfg)
        check = (export_onnx if cfg.to == "onnx" else export_torchscript)(built, out, cfg)
        return {"out": out, "network": built.description, "trained": built.trained, **check}
    genotype = load_genotype(spec, cfg.space or None)
    name = cfg.name or (getattr(genotype, "meta", None) or {}).get("name") or default_name(spec)
    title = name if cfg.to == "python" else graph.title_for(genotype, name)
    content = render(genotype, cfg.to, title, cfg.renderer)
    if out is None:
        return {"out": None, "text": content}
    out.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; name the file to write, e.g. {out / ('cells.' + cfg.to)}")
    atomic_write(out, lambda f: f.write(data))  # never a half-written file under the final name
    return {"out": out, "bytes": len(data)}
