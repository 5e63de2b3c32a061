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

import ast
import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssnas import registry
from ssnas.arch import (build_encoder, from_data, from_text, is_backbone, load_genotype, load_run, resolved_network,
                        size_words)
from ssnas.errors import UserError
from ssnas.export import graph
from ssnas.kernels import use_fast_kernels
from ssnas.nas.network import NetworkConfig
from ssnas.runs.settings import seed_everything

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
    to: str = field(default="json", metadata={"help": f"target format: {', '.join(TARGETS)}"})
    out: str = field(default="", metadata={"help": "output file (text targets print to stdout when omitted)"})
    name: str = field(default="", metadata={"help": "variable name for --to python (default: from the source)"})
    renderer: str = field(default="matplotlib", metadata={
        "help": "png/svg renderer: matplotlib (no Graphviz needed) or graphviz (needs `dot` on PATH)"})
    space: str = field(default="", metadata={"help": "search space of the genotype (default: the file's own)"})
    layers: int = field(default=0, metadata={
        "help": "onnx/torchscript: cells (default: the retrain run's, else the space's: DARTS 20, NAS-Bench-201 5 per stage)"})
    init_channels: int = field(default=0, metadata={
        "help": "onnx/torchscript: initial channels (default: the retrain run's, else the space's: DARTS 36, NAS-Bench-201 16)"})
    in_channels: int = field(default=0, metadata={"help": "onnx/torchscript: image channels (default: the run's, else 3)"})
    image_size: int = field(default=0, metadata={
        "help": "onnx/torchscript: image side; the exported graph is fixed to it (default: the run's, else 32)"})
    batch_size: int = field(default=4, metadata={"help": "onnx/torchscript: images in the batch the check runs"})
    opset: int = field(default=DEFAULT_OPSET, metadata={"help": "ONNX opset (15: read by onnxruntime >= 1.10)"})
    tolerance: float = field(default=1e-4, metadata={
        "help": "largest accepted difference between the export and PyTorch, relative to the output's scale"})
    seed: int = field(default=0, metadata={"help": "seed of fresh weights (no retrain run) and of the check batch"})


# ---- where a genotype comes from ---------------------------------------------------------------------------------

def resolve_genotype(spec: str, space: str | None = None) -> Any:
    """`load_genotype` (a genotype .json, a run folder, an NNI dict file, a published name) plus Python files
    written by `--to python` (`cells.py`, or `cells.py:NAME` when the file holds several)."""
    path, _, name = str(spec).partition(".py:")
    file = Path(path + ".py") if name else Path(spec)
    if file.suffix == ".py":
        if not file.is_file():
            raise UserError(f"no file at {file}; pass an existing genotypes .py file")
        return from_python(file.read_text(), str(file), name or None)
    return load_genotype(spec, space or None)


def default_name(spec: str) -> str:
    """A Python identifier for a genotype from where it came from: DARTS_V2, runs/darts-simclr -> DARTS_SIMCLR;
    a NAS-Bench-201 string given as it is -> NB201_CELL."""
    if str(spec).strip().startswith("|"):
        return "NB201_CELL"
    stem = Path(str(spec).rstrip("/")).name
    if stem == "genotype.json":
        stem = Path(str(spec)).parent.name
    stem = Path(stem).stem if stem.endswith(".json") else stem
    ident = re.sub(r"\W+", "_", stem).strip("_").upper() or "GENOTYPE"
    return ident if not ident[0].isdigit() else f"G_{ident}"


# ---- Python literal (DARTS cnn/genotypes.py style) ----------------------------------------------------------------

def to_python(genotype: Any, name: str = "GENOTYPE") -> str:
    """A self-contained module holding one constant: the space's own string when it has one (NAS-Bench-201's,
    what its API's queries take), else a `Genotype` namedtuple of the JSON fields, as DARTS's cnn/genotypes.py
    writes its cells."""
    if not name.isidentifier():
        raise UserError(f"--name {name!r} is not a Python identifier; use letters, digits and _")
    space = registry.space(genotype.space)
    meta = ", ".join(f"{k}={v}" for k, v in sorted((genotype.meta or {}).items()) if k != "name")
    text = space.to_text(genotype)
    if text is not None:
        lines = [f'"""A {space.NAME} genotype, written by `ssnas export --to python` (the space\'s own string)."""', ""]
        lines += [f"# {meta}"] if meta else []
        return "\n".join([*lines, f"{name} = {text!r}", ""])
    fields = {k: v for k, v in genotype.to_json().items() if k not in ("space", "meta")}

    def literal(value: Any) -> str:  # [op, input] pairs as tuples, the way cnn/genotypes.py writes them
        if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            return "[" + ", ".join(repr(tuple(v)) for v in value) + "]"
        return repr(value)

    lines = [f'"""A {space.NAME} genotype, written by `ssnas export --to python` (format of quark0/darts '
             f'cnn/genotypes.py)."""', "from collections import namedtuple", "",
             f"Genotype = namedtuple('Genotype', {' '.join(fields)!r})", ""]
    if meta:
        lines.append(f"# {meta}")
    lines += [f"{name} = Genotype(", *(f"    {k}={literal(v)}," for k, v in fields.items()), ")", ""]
    return "\n".join(lines)


# cnn/genotypes.py's field order, for positional `Genotype(...)` calls in files that do not define the namedtuple
_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")


def _literal(node: ast.AST, where: str) -> Any:
    """A literal, or `range(a, b)` as DARTS writes concat lists; never executes anything."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("range", "list"):
        args = [_literal(a, where) for a in node.args]
        return list(range(*args)) if node.func.id == "range" else list(*args)
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise UserError(f"{where} must be a literal (lists of ('op', input) pairs, concat lists or range(a, b))") from None


def _namedtuple_fields(tree: ast.AST) -> tuple[str, ...] | None:
    """The fields of `Genotype = namedtuple('Genotype', 'a b c')` in the file, if it defines it."""
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "namedtuple"
                and len(node.args) == 2 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            return tuple(node.args[1].value.replace(",", " ").split())
    return None


def _is_space_string(node: ast.AST) -> bool:
    """A string constant in a space's own format (NAS-Bench-201's '|op~0|+...')."""
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.strip().startswith("|")


def from_python(text: str, source: str = "genotypes.py", name: str | None = None) -> Any:
    """Genotypes assigned as `NAME = Genotype(normal=..., normal_concat=..., reduce=..., reduce_concat=...)`
    (keywords or positions), or as `NAME = '|op~0|+...'` (a space's own string), read with `ast`, not executed;
    `name` picks one when the file holds several."""
    try:
        tree = ast.parse(text, filename=source)
    except SyntaxError as e:
        raise UserError(f"{source} is not valid Python (line {e.lineno}: {e.msg})") from None
    found: dict[str, ast.AST] = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and ((isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name)
                      and node.value.func.id == "Genotype") or _is_space_string(node.value))):
            found[node.targets[0].id] = node.value
    if not found:
        raise UserError(f"{source} assigns no `NAME = Genotype(...)` nor `NAME = '|op~0|+...'`; write one with "
                        f"`ssnas export --to python`")
    if name is None and len(found) > 1:
        raise UserError(f"{source} holds {len(found)} genotypes ({', '.join(found)}); pick one as {source}:NAME")
    key = name or next(iter(found))
    if key not in found:
        raise UserError(f"{source} has no genotype {key!r}; it holds {', '.join(found)}")
    call = found[key]
    if isinstance(call, ast.Constant):
        genotype = from_text(call.value, f"{source}: {key}")
        genotype.meta.update({"name": key})
        return genotype
    fields = _namedtuple_fields(tree) or _FIELDS
    if len(call.args) > len(fields):
        raise UserError(f"{source}: {key} = Genotype(...) takes at most {len(fields)} fields, got {len(call.args)}")
    values = {f: _literal(a, f"{source}: {key}.{f}") for f, a in zip(fields, call.args)}
    for kw in call.keywords:
        if kw.arg not in fields:
            raise UserError(f"{source}: {key} = Genotype(...) has unknown field {kw.arg!r}; fields are {', '.join(fields)}")
        values[kw.arg] = _literal(kw.value, f"{source}: {key}.{kw.arg}")
    genotype = from_data(values, f"{source}: {key}")
    genotype.meta.update({"name": key})
    return genotype


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


# ---- network targets -------------------------------------------------------------------------------------------

@dataclass
class BuiltNetwork:
    model: Any  # torch.nn.Module in eval mode
    input_shape: tuple[int, int, int]
    trained: bool  # weights from a retrain run, or fresh ones
    description: str


def build_for_export(spec: str, cfg: ExportConfig) -> BuiltNetwork:
    """A retrain run folder (its network and weights), or a genotype spec stacked at --layers/--init-channels."""
    import torch

    folder = Path(spec)
    state = None
    if folder.is_dir() and (folder / "checkpoint.pt").is_file():
        info = load_run(folder)
        state = info.state
        arch = info.arch
        saved_net = (info.config or {}).get("network", {}) if state is not None else {}
    else:
        arch = spec.strip().lower() if is_backbone(spec) else resolve_genotype(spec, cfg.space or None)
        saved_net = {}
    data = (state or {}).get("data", {})
    net_cfg = NetworkConfig()
    for key in ("layers", "init_channels"):  # the flag, else the run's, else the space's own (resolved_network)
        value = getattr(cfg, key) or saved_net.get(key)
        if value:
            setattr(net_cfg, key, int(value))
    if not is_backbone(arch):
        net_cfg = resolved_network(net_cfg, arch)
    if state is not None and ((cfg.layers and cfg.layers != saved_net.get("layers"))
                              or (cfg.init_channels and cfg.init_channels != saved_net.get("init_channels"))):
        raise UserError(f"{folder} was trained with --layers {saved_net.get('layers')} --init-channels "
                        f"{saved_net.get('init_channels')}; drop --layers/--init-channels to export its weights")
    in_channels = cfg.in_channels or int(data.get("channels", 3))
    size = cfg.image_size or int(data.get("view_size", 32))
    if state is not None and in_channels != int(data.get("channels", in_channels)):
        raise UserError(f"{folder} was trained on {data['channels']}-channel images; drop --in-channels")
    seed_everything(cfg.seed)
    model = build_encoder(arch, net_cfg, in_channels)
    if state is not None:
        model.load_state_dict(state["encoder"])
    model = model.to(memory_format=torch.contiguous_format).eval()
    # ONNX and TorchScript record standard ops only: the fast kernels are custom autograd Functions, and the
    # textbook path computes the same maths (tests/test_fast_path.py)
    use_fast_kernels(model, False)
    if state is not None:
        name = f"{folder} ({(info.config or {}).get('arch') or state.get('arch', {}).get('name', '?')})"
    else:
        name = arch if isinstance(arch, str) else default_name(spec)
    what = f"{name}: {size_words(arch, net_cfg)}, input {in_channels}x{size}x{size}"
    return BuiltNetwork(model, (in_channels, size, size), state is not None, what)


def _check(reference: Any, exported: Any, tolerance: float, what: str) -> float:
    """Largest difference relative to the output's scale; a UserError when it exceeds `tolerance`."""
    import numpy as np

    reference, exported = np.asarray(reference, dtype=np.float64), np.asarray(exported, dtype=np.float64)
    if reference.shape != exported.shape:
        raise UserError(f"{what} returns shape {exported.shape}, PyTorch {reference.shape}; the export is broken")
    error = float(np.max(np.abs(reference - exported)) / max(1.0, float(np.max(np.abs(reference)))))
    if not error <= tolerance:
        raise UserError(f"{what} differs from PyTorch by {error:.2e} (relative), more than --tolerance {tolerance:g}")
    return error


def _batches(built: BuiltNetwork, cfg: ExportConfig) -> list[Any]:
    """Two batches of different sizes (the export must not have frozen the batch size)."""
    import torch

    g = torch.Generator().manual_seed(cfg.seed)
    return [torch.randn(n, *built.input_shape, generator=g) for n in (cfg.batch_size, cfg.batch_size + 1)]


def export_onnx(built: BuiltNetwork, out: Path, cfg: ExportConfig) -> dict[str, Any]:
    """ONNX with a dynamic batch axis (fixed image size: the graph is traced at it), then run by onnxruntime
    (or onnx's reference evaluator when onnxruntime is absent) on two batches and compared with PyTorch."""
    import warnings

    import torch

    try:
        import onnx
    except ImportError:
        raise UserError("--to onnx needs the onnx package: pip install onnx onnxruntime") from None
    x = _batches(built, cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # the TorchScript-based exporter is deprecated but needs no onnxscript; the tracer warns about
        # FactorizedReduce's odd-size branch, which is fixed for the fixed image size we export
        warnings.simplefilter("ignore")
        torch.onnx.export(built.model, (x[0],), str(out), dynamo=False, opset_version=cfg.opset,
                          input_names=["images"], output_names=["features"],
                          dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}})
    onnx.checker.check_model(onnx.load(str(out)))
    try:
        import onnxruntime as ort

        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        run = lambda batch: session.run(None, {"images": batch})[0]  # noqa: E731
        runtime = f"onnxruntime {ort.__version__}"
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(str(out))
        run = lambda batch: evaluator.run(None, {"images": batch})[0]  # noqa: E731
        runtime = f"onnx.reference (onnx {onnx.__version__})"
    errors = []
    with torch.no_grad():
        for batch in x:
            errors.append(_check(built.model(batch), run(batch.numpy()), cfg.tolerance, f"the ONNX model ({runtime})"))
    return {"runtime": runtime, "max_error": max(errors), "opset": cfg.opset, "batches": [len(b) for b in x]}


def export_torchscript(built: BuiltNetwork, out: Path, cfg: ExportConfig) -> dict[str, Any]:
    """A traced TorchScript module (fixed image size), saved, loaded back and compared with PyTorch."""
    import warnings

    import torch

    x = _batches(built, cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # check_trace re-traces and compares (15 s here); we compare the saved file itself, on two batch sizes
        traced = torch.jit.trace(built.model, x[0], check_trace=False)
        torch.jit.save(traced, str(out))
        loaded = torch.jit.load(str(out))
        errors = [_check(built.model(b).numpy(), loaded(b).numpy(), cfg.tolerance, "the TorchScript model") for b in x]
    return {"runtime": f"torch.jit {torch.__version__}", "max_error": max(errors), "batches": [len(b) for b in x]}


# ---- the command's work --------------------------------------------------------------------------------------

def validate(cfg: ExportConfig) -> None:
    if cfg.to not in TARGETS:
        raise UserError(f"--to {cfg.to!r} is not a target; choose one of {', '.join(TARGETS)}")
    if not cfg.out and cfg.to not in TEXT_TARGETS:
        raise UserError(f"--to {cfg.to} writes a binary file; pass --out FILE")
    if cfg.renderer not in ("matplotlib", "graphviz"):
        raise UserError(f"--renderer must be matplotlib or graphviz, got {cfg.renderer!r}")
    if cfg.batch_size < 1 or cfg.tolerance <= 0 or min(cfg.layers, cfg.init_channels, cfg.in_channels, cfg.image_size) < 0:
        raise UserError("--batch-size and --tolerance must be positive; sizes must not be negative")


def export(spec: str, cfg: ExportConfig) -> dict[str, Any]:
    """Write `spec` as `cfg.to`; returns what was done (and the text, for text targets without --out)."""
    validate(cfg)
    out = Path(cfg.out) if cfg.out else None
    if cfg.to in NETWORK_TARGETS:
        built = build_for_export(spec, cfg)
        check = (export_onnx if cfg.to == "onnx" else export_torchscript)(built, out, cfg)
        return {"out": out, "network": built.description, "trained": built.trained, **check}
    genotype = resolve_genotype(spec, cfg.space or None)
    name = cfg.name or (getattr(genotype, "meta", None) or {}).get("name") or default_name(spec)
    title = name if cfg.to == "python" else graph.title_for(genotype, name)
    content = render(genotype, cfg.to, title, cfg.renderer)
    if out is None:
        return {"out": None, "text": content}
    out.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(out)  # never a half-written file under the final name
    return {"out": out, "bytes": len(data)}

