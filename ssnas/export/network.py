"""Networks out: ONNX and TorchScript of a retrain run's network (trained weights) or of a genotype at given sizes
(fresh weights), each checked against PyTorch on two batches of different sizes.

What the exported graph takes (`INPUT_CONTRACT`, also stored in the file's metadata, key "ssnas"): float32 images
[batch, C, H, W] with values in [0, 1] (raw RGB, or grey for 1-channel data; H = W = the trained view size); the
normalisation with the run's mean and std is inside the graph. With `--no-raw-input` the graph is the bare network
and takes images already normalised with the mean/std the metadata lists. The output is the `feature_dim`
features. The export records the textbook modules (`use_fast_kernels(model, False)`): the speed route's custom
autograd functions are not exportable, and they compute the same maths."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ssnas.errors import UserError
from ssnas.kernels import use_fast_kernels
from ssnas.model import create_model, model_source
from ssnas.runs.settings import seed_everything

INPUT_CONTRACT = ("float32 images [batch, C, H, W], values in [0, 1] (raw pixels / 255; RGB order, or grey), H = W "
                  "= input_size; normalised inside the graph")
NORMALISED_CONTRACT = ("float32 images [batch, C, H, W], already normalised: (pixels / 255 - mean) / std per channel, "
                       "H = W = input_size")


class RawImageNetwork(nn.Module):
    """What an export records by default: raw images in [0, 1] -> `model(model.preprocess(x))`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(self.model.preprocess(x))


@dataclass
class BuiltNetwork:
    model: Any  # torch.nn.Module in eval mode: what is exported
    input_shape: tuple[int, int, int]
    trained: bool  # weights from a retrain run, or fresh ones
    description: str
    raw_input: bool  # the graph takes [0, 1] images and normalises them itself
    metadata: dict[str, Any]


def build_for_export(spec: str, cfg: Any) -> BuiltNetwork:
    """A retrain run folder (its network and weights), or a genotype spec stacked at --layers/--init-channels."""
    import torch

    src = model_source(spec, cfg.space or None)
    seed_everything(cfg.seed)
    net = create_model(src, pretrained=src.has_weights, layers=cfg.layers, init_channels=cfg.init_channels,
                       in_channels=cfg.in_channels, image_size=cfg.image_size)
    net = net.to(memory_format=torch.contiguous_format).eval()
    # ONNX and TorchScript record standard ops only: the fast kernels are custom autograd Functions, and the
    # textbook path computes the same maths (tests/test_fast_path.py)
    use_fast_kernels(net, False)
    info = net.pretrained_cfg
    shape = tuple(info["input_size"])
    what = f"{src.name}: {info['size']}, input {shape[0]}x{shape[1]}x{shape[2]}"
    metadata = {"input": INPUT_CONTRACT if cfg.raw_input else NORMALISED_CONTRACT, "output": "features [batch, "
                f"{info['num_features']}]", "normalisation_in_graph": bool(cfg.raw_input),
                **{k: info[k] for k in ("input_size", "mean", "std", "architecture", "source", "space", "genotype",
                                        "layers", "init_channels", "num_features", "pretrained", "dataset",
                                        "objective", "pretrain_epochs")}}
    model = RawImageNetwork(net).eval() if cfg.raw_input else net
    return BuiltNetwork(model, shape, src.has_weights, what, bool(cfg.raw_input), metadata)


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
    draw = torch.rand if built.raw_input else torch.randn  # raw images lie in [0, 1]
    return [draw(n, *built.input_shape, generator=g) for n in (cfg.batch_size, cfg.batch_size + 1)]


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
    exported = onnx.load(str(out))
    exported.doc_string = f"ssnas network; input 'images': {built.metadata['input']}"
    exported.graph.input[0].doc_string = built.metadata["input"]
    onnx.helper.set_model_props(exported, {"ssnas": json.dumps(built.metadata, sort_keys=True)})
    onnx.save(exported, str(out))
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
        torch.jit.save(traced, str(out), _extra_files={"ssnas.json": json.dumps(built.metadata, sort_keys=True)})
        loaded = torch.jit.load(str(out))
        errors = [_check(built.model(b).numpy(), loaded(b).numpy(), cfg.tolerance, "the TorchScript model") for b in x]
    return {"runtime": f"torch.jit {torch.__version__}", "max_error": max(errors), "batches": [len(b) for b in x]}
