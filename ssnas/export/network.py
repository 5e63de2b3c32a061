"""Networks out: ONNX and TorchScript of a retrain run's network (trained weights) or of a genotype at given sizes
(fresh weights), each checked against PyTorch on two batches of different sizes. The export records the textbook
modules (`use_fast_kernels(model, False)`): the speed route's custom autograd functions are not exportable, and
they compute the same maths."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssnas.arch import build_encoder, is_backbone, load_run, resolved_network, size_words
from ssnas.errors import UserError
from ssnas.export.python import default_name, resolve_genotype
from ssnas.kernels import use_fast_kernels
from ssnas.nas.network import NetworkConfig
from ssnas.runs.settings import seed_everything


@dataclass
class BuiltNetwork:
    model: Any  # torch.nn.Module in eval mode
    input_shape: tuple[int, int, int]
    trained: bool  # weights from a retrain run, or fresh ones
    description: str


def build_for_export(spec: str, cfg: Any) -> BuiltNetwork:
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


def _batches(built: BuiltNetwork, cfg: Any) -> list[Any]:
    """Two batches of different sizes (the export must not have frozen the batch size)."""
    import torch

    g = torch.Generator().manual_seed(cfg.seed)
    return [torch.randn(n, *built.input_shape, generator=g) for n in (cfg.batch_size, cfg.batch_size + 1)]


def export_onnx(built: BuiltNetwork, out: Path, cfg: Any) -> dict[str, Any]:
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


def export_torchscript(built: BuiltNetwork, out: Path, cfg: Any) -> dict[str, Any]:
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
