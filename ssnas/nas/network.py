"""Full-size encoders for retraining and evaluation: their settings, size (parameters, FLOPs) and the
ResNet-18 baseline.

A search space turns a genotype into a network (`search_spaces/<space>.build_network`); this module holds
what is not tied to a space: `NetworkConfig`, `build_encoder(arch, ...)` (a genotype spec or `resnet18`),
the CIFAR ResNet-18 that contrastive papers use as their baseline, and the size counters.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ssnas.errors import UserError

# Architectures that are not genotypes: fixed backbones built here, for comparison under identical training.
BACKBONES = ("resnet18",)
# DARTS's CIFAR-10 evaluation network (Liu et al. 2019, App. A.2.1; quark0/darts cnn/train.py): 20 cells, C = 36.
# A space module may declare its own NETWORK_DEFAULTS (nb201: N = 5 cells per stage, C = 16); one that declares
# none, darts included, gets these.
DARTS_NETWORK_DEFAULTS = {"layers": 20, "init_channels": 36}
SIZES = ("layers", "init_channels")


class SpaceDefault(int):
    """A network size nobody set. It reads as DARTS's value, so code that builds a DARTS network straight from
    `NetworkConfig()` keeps DARTS's sizes, and `resolved_network` replaces it with the genotype's own space's
    default (NAS-Bench-201: 5 cells per stage, 16 channels). Any value set by a flag, a config file or a
    keyword is a plain int and is kept as given, whatever its value."""


@dataclass
class NetworkConfig:
    """Size and regularisation of the evaluation network. Sizes left unset are the space's own evaluation
    network (`resolved_network`): DARTS's CIFAR-10 network (20 cells, 36 initial channels; Liu et al. 2019,
    App. A.2.1) or NAS-Bench-201's (5 cells per stage, 16 channels; Dong & Yang 2020, Sec. 2.1)."""

    layers: int = field(default=SpaceDefault(20), metadata={
        "help": "cells in the network; default: the space's own (DARTS 20; NAS-Bench-201 5 per stage)"})
    init_channels: int = field(default=SpaceDefault(36), metadata={
        "help": "channels of the first cell; default: the space's own (DARTS 36; NAS-Bench-201 16)"})
    auxiliary: bool = field(default=False, metadata={
        "help": "auxiliary classifier at 2/3 depth (supervised training only; DARTS: on)"})
    auxiliary_weight: float = field(default=0.4, metadata={"help": "weight of the auxiliary loss (DARTS: 0.4)"})
    drop_path: float = field(default=0.0, metadata={
        "help": "final drop-path probability, ramped linearly from 0 over the epochs (DARTS supervised: 0.2)"})

    def validate(self) -> None:
        """DARTS's network rules; a space with another network checks its own (`check_network`)."""
        if self.layers < 3:
            raise UserError(f"--layers {self.layers} is too small: the network needs at least 3 cells "
                            f"(two of them reduction cells, at 1/3 and 2/3 of the depth)")
        if self.init_channels < 2 or self.init_channels % 2:
            raise UserError(f"--init-channels {self.init_channels} must be an even number >= 2 "
                            f"(factorized reduction splits the channels in two)")
        if not 0.0 <= self.drop_path < 1.0:
            raise UserError(f"--drop-path {self.drop_path} must be in [0, 1)")
        if self.auxiliary_weight < 0:
            raise UserError(f"--auxiliary-weight {self.auxiliary_weight} must be >= 0")


def count_parameters(model: nn.Module, exclude_auxiliary: bool = True) -> int:
    """Trainable parameters; the auxiliary head is left out, as DARTS's `count_parameters_in_MB` does (it
    only exists during supervised training and is thrown away afterwards)."""
    return sum(p.numel() for name, p in model.named_parameters()
               if p.requires_grad and not (exclude_auxiliary and "auxiliary" in name))


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass on one image of `input_shape` (C, H, W), by PyTorch's own counter.

    `FlopCounterMode` counts 2 FLOPs per multiply-add of convolutions and matrix products, and nothing
    for pooling, batch norm or activations; halve it for the "mult-adds" DARTS quotes for ImageNet.
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        x = torch.zeros(1, *input_shape, device=param.device, dtype=param.dtype)
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
        return int(counter.get_total_flops())
    finally:
        model.train(was_training)


class ResNet18Cifar(nn.Module):
    """torchvision's ResNet-18 with the CIFAR stem SimCLR uses (Chen et al. 2020, App. B.9): the 7x7/2 conv
    becomes a 3x3/1 conv and the first max-pool is removed; the classifier is dropped, so it returns the
    512 globally pooled features."""

    feature_dim = 512

    def __init__(self, in_channels: int = 3):
        super().__init__()
        from torchvision.models import resnet18  # heavy import, only when this baseline is built

        net = resnet18(weights=None)
        net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        net.fc = nn.Identity()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def is_backbone(arch: Any) -> bool:
    return isinstance(arch, str) and arch.strip().lower() in BACKBONES


def network_defaults(space: str) -> dict[str, int]:
    """The evaluation network's sizes in `space` when none are given: its NETWORK_DEFAULTS, else DARTS's."""
    from ssnas import registry

    return dict(getattr(registry.space(space), "NETWORK_DEFAULTS", DARTS_NETWORK_DEFAULTS))


def resolved_network(cfg: NetworkConfig, genotype: Any) -> NetworkConfig:
    """A copy of `cfg` whose unset sizes are the genotype's space's defaults (sizes given are kept), checked
    against that space: its `check_network(cfg)` if it has one, else DARTS's rules (`NetworkConfig.validate`)."""
    from ssnas import registry

    space = registry.space(genotype.space)
    defaults = network_defaults(genotype.space)
    sizes = {k: int(defaults[k] if isinstance(getattr(cfg, k), SpaceDefault) else getattr(cfg, k)) for k in SIZES}
    resolved = dataclasses.replace(cfg, **sizes)
    check = getattr(space, "check_network", None)
    if check is not None:
        check(resolved)
    else:
        resolved.validate()
    return resolved


def size_words(arch: Any, cfg: NetworkConfig) -> str:
    """'20 cells, 36 channels' (DARTS) or '5 cells per stage, 16 channels' (NAS-Bench-201), for printing."""
    unit = "cells"
    if not is_backbone(arch) and hasattr(arch, "space"):
        from ssnas import registry

        unit = getattr(registry.space(arch.space), "LAYERS_UNIT", unit)
    return f"{cfg.layers} {unit}, {cfg.init_channels} channels"


def build_encoder(arch: Any, cfg: NetworkConfig, in_channels: int, num_classes: int = 0) -> nn.Module:
    """An encoder (images -> `feature_dim` features) for `arch`: a genotype, a genotype spec (file, run
    folder, published name, NAS-Bench-201 string; see `ssnas.genotypes.load_genotype`) or `resnet18`.
    Sizes left unset in `cfg` are the genotype's space's own (`resolved_network`)."""
    if is_backbone(arch):
        if cfg.auxiliary or cfg.drop_path:
            raise UserError("--auxiliary and --drop-path apply to DARTS cells only; turn them off for --arch resnet18")
        return ResNet18Cifar(in_channels)
    from ssnas import registry
    from ssnas.arch import load_genotype

    genotype = load_genotype(arch) if isinstance(arch, str) else arch
    space = registry.space(genotype.space)
    if not hasattr(space, "build_network"):
        raise UserError(f"search space {genotype.space!r} cannot build an evaluation network yet")
    return space.build_network(genotype, resolved_network(cfg, genotype), in_channels, num_classes=num_classes)


def build_network(arch: Any, *, layers: int = 0, init_channels: int = 0, in_channels: int = 3,
                  auxiliary: bool = False, drop_path: float = 0.0, num_classes: int = 0) -> nn.Module:
    """Convenience for scripts and notebooks: `build_network("DARTS_V2", layers=8, init_channels=16)`, or
    `build_network("|nor_conv_3x3~0|+...|")`. A size of 0 is the space's own (DARTS 20 cells, 36 channels;
    NAS-Bench-201 5 cells per stage, 16 channels)."""
    cfg = NetworkConfig(auxiliary=auxiliary, drop_path=drop_path)
    if layers:
        cfg.layers = layers
    if init_channels:
        cfg.init_channels = init_channels
    return build_encoder(arch, cfg, in_channels, num_classes)


def describe(encoder: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Parameters and FLOPs of an encoder, as retrain and eval report them."""
    return {"params": count_parameters(encoder), "flops": count_flops(encoder, input_shape)}
