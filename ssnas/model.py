"""The found network as a library object, timm-style: one call from a run folder, a genotype or a published name.

    import ssnas
    model = ssnas.create_model("runs/darts-simclr-retrain", pretrained=True)  # the retrain's weights
    model = ssnas.create_model("runs/darts-simclr", num_classes=10)           # a search run: its cell, fresh weights
    model = ssnas.create_model("DARTS_V2", num_classes=10, layers=8, init_channels=16)
    model = ssnas.create_model("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+...|", num_classes=10)
    model = ssnas.create_model("resnet18", num_classes=100)

    x = model.preprocess(images)          # raw images, uint8 0-255 or float 0-1 [B, C, H, W] -> the network's input
    logits = model(x)                     # [B, num_classes]; the features when num_classes is 0
    features = model.forward_features(x)  # [B, model.num_features], the embedding the retrain learnt
    model.pretrained_cfg                  # mean, std, input_size, num_features, num_classes, source, ...

The model is the space's own network (`forward`, `forward_features`, `classifier`; DARTS's auxiliary tower with
`auxiliary=True`), on the exact speed route, with `pretrained_cfg` (alias `default_cfg`), `num_features` and
`preprocess` (an nn.Module without state-dict entries, so `model.state_dict()` is the network's alone) attached.
Like timm's, `forward` takes normalised images: `preprocess` does what the retrain's evaluation did (scale to
[0, 1], resize to the trained view size with antialiased bilinear interpolation, subtract the mean, divide by
the std). `pretrained=True` loads the retrain checkpoint's encoder; a classifier (num_classes > 0) starts fresh.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssnas.arch import build_encoder, is_backbone, load_genotype, load_run, resolved_network, size_words
from ssnas.errors import UserError
from ssnas.nas.network import NetworkConfig
from ssnas.runs.settings import epochs_done

# Preprocessing of a network that was never trained by ssnas (a genotype, a search run): [0, 1] -> [-1, 1].
# Pass mean= and std= for the data you will train it on.
NEUTRAL_MEAN, NEUTRAL_STD = 0.5, 0.5
DEFAULT_IMAGE_SIZE = 32
# Keys a retrain's encoder never has: the heads a model built with labels adds (a fresh classifier, DARTS's tower)
HEAD_PREFIXES = ("classifier.", "auxiliary_head.")


class Preprocess(nn.Module):
    """Raw images -> the network's input: uint8 (0-255) or float (0-1) images [B, C, H, W] are scaled to [0, 1],
    resized to `size` x `size` when they differ (bilinear, antialiased, as `ViewMaker.plain`), then normalised.
    Its mean and std are buffers that follow `.to(device)` but stay out of the state dict."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], size: int):
        super().__init__()
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise UserError(f"mean and std need one entry per channel and a positive std, got {list(mean)} and {list(std)}")
        self.register_buffer("mean", torch.tensor([float(m) for m in mean]).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([float(s) for s in std]).view(1, -1, 1, 1), persistent=False)
        self.size = int(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.mean.shape[1]:
            raise ValueError(f"expected images [B, {self.mean.shape[1]}, H, W], got shape {tuple(x.shape)}")
        if x.dtype == torch.uint8:
            x = x.to(self.mean.dtype) / 255.0
        elif not x.is_floating_point():
            raise TypeError(f"expected uint8 (0-255) or float (0-1) images, got {x.dtype}")
        if tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"size={self.size}, mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


@dataclass
class ModelSource:
    """What a model is built from: the architecture, and what a retrain run adds (sizes, data, weights)."""

    arch: Any  # a genotype or a backbone name
    name: str
    origin: str  # what the user passed, for messages
    network: dict[str, int] = field(default_factory=dict)  # layers/init_channels a retrain built
    data: dict[str, Any] = field(default_factory=dict)  # the retrain's channels, view size, mean, std, dataset
    state: dict[str, Any] | None = None  # the retrain checkpoint (its "encoder" holds the weights)
    config: dict[str, Any] | None = None  # the retrain's config.json

    @property
    def has_weights(self) -> bool:
        return self.state is not None and "encoder" in self.state


def model_source(source: Any, space: str | None = None) -> ModelSource:
    """A retrain run folder (architecture, sizes, preprocessing, weights), a search run folder, a genotype (object,
    file or string), a published name or `resnet18`."""
    if hasattr(source, "space") and hasattr(source, "to_json"):
        return ModelSource(source, (getattr(source, "meta", None) or {}).get("name") or "genotype", "genotype")
    origin = str(source)
    if is_backbone(origin):
        return ModelSource(origin.strip().lower(), origin.strip().lower(), origin)
    folder = Path(origin).expanduser()
    if folder.is_dir() and (folder / "checkpoint.pt").is_file():
        info = load_run(folder)
        if info.pretrained:
            saved = info.state["arch"]
            return ModelSource(info.arch, f"{folder.name} ({saved.get('name', '?')})", origin,
                               network=dict((info.config or {}).get("network", {})), data=dict(info.state.get("data", {})),
                               state=info.state, config=info.config)
    genotype = load_genotype(origin, space)
    return ModelSource(genotype, (genotype.meta or {}).get("name") or Path(origin.rstrip("/")).name or origin, origin)


def _network_config(src: ModelSource, layers: int, init_channels: int, auxiliary: bool, drop_path: float,
                    pretrained: bool) -> NetworkConfig:
    cfg = NetworkConfig(auxiliary=auxiliary, drop_path=drop_path)
    for key, value in (("layers", layers), ("init_channels", init_channels)):
        saved = src.network.get(key)
        if pretrained and value and saved and value != saved:
            raise UserError(f"{src.origin}'s weights are for layers={src.network.get('layers')}, init_channels="
                            f"{src.network.get('init_channels')}; drop --layers/--init-channels (or pass those sizes) "
                            f"to load them")
        if value or saved:
            setattr(cfg, key, int(value or saved))
    return cfg if is_backbone(src.arch) else resolved_network(cfg, src.arch)


def load_encoder_weights(model: nn.Module, encoder_state: dict[str, torch.Tensor], source: str) -> None:
    """A retrain's encoder weights into `model`; only the heads a labelled model adds (HEAD_PREFIXES) may be
    missing, and they keep their fresh values."""
    result = model.load_state_dict(encoder_state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(HEAD_PREFIXES)]
    if missing or result.unexpected_keys:
        first = (missing or result.unexpected_keys)[0]
        raise UserError(f"the weights in {source} do not fit this network ({len(missing)} missing, "
                        f"{len(result.unexpected_keys)} unexpected, e.g. {first!r}); build it with the run's own sizes")


def create_model(source: Any, *, num_classes: int = 0, pretrained: bool = False, layers: int = 0,
                 init_channels: int = 0, in_channels: int = 0, image_size: int = 0, auxiliary: bool = False,
                 drop_path: float = 0.0, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 space: str | None = None) -> nn.Module:
    """The network of `source` as an nn.Module with `forward` (logits when `num_classes` > 0, else features),
    `forward_features`, `preprocess`, `num_features` and `pretrained_cfg` (see the module docstring).

    source: a retrain run folder, a search run folder, a genotype (object, .json, .py or .txt file, a space's string
        such as NAS-Bench-201's `|op~0|+...`), a published name (DARTS_V1, DARTS_V2) or `resnet18`.
    pretrained: load the retrain run's encoder weights (a UserError when `source` has none).
    layers, init_channels: network size; 0 = the retrain's, else the space's own (DARTS 20 cells / 36 channels,
        NAS-Bench-201 5 cells per stage / 16 channels).
    in_channels, image_size: input; 0 = the retrain's, else 3 channels and 32 pixels.
    auxiliary, drop_path: DARTS's supervised-training extras (the auxiliary tower needs num_classes).
    mean, std: the normalisation `preprocess` applies; default: the retrain's, else 0.5 (maps [0, 1] to [-1, 1]).
    space: refuse a genotype of another space.
    """
    if num_classes < 0:
        raise UserError(f"num_classes must be >= 0, got {num_classes}")
    src = source if isinstance(source, ModelSource) else model_source(source, space)
    if pretrained and not src.has_weights:
        raise UserError(f"{src.origin} holds no retrained weights (checkpoint.pt of `ssnas retrain`); pass a retrain "
                        f"run folder, or pretrained=False for fresh weights")
    cfg = _network_config(src, layers, init_channels, auxiliary, drop_path, pretrained)
    channels = int(in_channels or src.data.get("channels", 3))
    if pretrained and channels != int(src.data.get("channels", channels)):
        raise UserError(f"{src.origin} was trained on {src.data['channels']}-channel images; drop --in-channels "
                        f"(in_channels=) to load its weights")
    size = int(image_size or src.data.get("view_size", DEFAULT_IMAGE_SIZE))
    mean = list(mean) if mean is not None else list(src.data.get("mean", [NEUTRAL_MEAN] * channels))
    std = list(std) if std is not None else list(src.data.get("std", [NEUTRAL_STD] * channels))
    if len(mean) != channels or len(std) != channels:
        raise UserError(f"mean and std need {channels} entries (one per input channel), got {len(mean)} and {len(std)}")

    model = build_encoder(src.arch, cfg, channels, num_classes)
    if pretrained:
        load_encoder_weights(model, src.state["encoder"], src.origin)
    model.preprocess = Preprocess(mean, std, size)
    model.num_features = int(model.feature_dim)
    genotype = None if isinstance(src.arch, str) else src.arch
    model.pretrained_cfg = model.default_cfg = {
        "architecture": src.name, "source": src.origin,
        "space": None if genotype is None else genotype.space,
        "genotype": None if genotype is None else genotype.to_json(),
        "layers": None if genotype is None else cfg.layers,
        "init_channels": None if genotype is None else cfg.init_channels,
        "size": size_words(src.arch, cfg) if genotype is not None else src.arch,
        "input_size": (channels, size, size), "mean": tuple(mean), "std": tuple(std),
        "interpolation": "bilinear", "crop_pct": 1.0, "input_range": (0.0, 1.0),
        "num_features": model.num_features, "num_classes": num_classes, "pretrained": bool(pretrained),
        "dataset": src.data.get("dataset") if src.has_weights else None,
        "objective": ((src.config or {}).get("objective") or {}).get("name") if src.has_weights else None,
        "pretrain_epochs": epochs_done(src.state) if src.has_weights else 0,
    }
    return model

