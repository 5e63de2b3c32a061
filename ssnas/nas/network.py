"""Full-size encoders for retraining and evaluation, as far as they are not tied to a space: their settings
(`NetworkConfig`), their size (parameters, FLOPs) and the CIFAR ResNet-18 that contrastive papers use as their
baseline. A space turns a genotype into a network (its `build_network`); `ssnas.arch.build_encoder` picks the
space of a genotype.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ssnas.config import check_tree

# Architectures that are not genotypes: fixed backbones built here, for comparison under identical training.
BACKBONES = ("resnet18",)
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
        "help": "cells in the network; default: the space's own (DARTS 20; NAS-Bench-201 5 per stage)",
        "range": "[1, 200]"})
    init_channels: int = field(default=SpaceDefault(36), metadata={
        "help": "channels of the first cell; default: the space's own (DARTS 36; NAS-Bench-201 16)",
        "range": "[1, 1024]"})
    auxiliary: bool = field(default=False, metadata={
        "help": "auxiliary classifier at 2/3 depth (supervised training only; DARTS: on)"})
    auxiliary_weight: float = field(default=0.4, metadata={"help": "weight of the auxiliary loss (DARTS: 0.4)",
                                                            "range": "[0, 100]"})
    drop_path: float = field(default=0.0, metadata={
        "help": "final drop-path probability, ramped linearly from 0 over the epochs (DARTS supervised: 0.2)",
        "range": "[0, 1)"})

    def validate(self) -> None:
        """The settings' own ranges (declared beside each field); the space that builds the network checks the
        sizes it can build (`check_network`)."""
        check_tree(self, "network.")


def global_pool(maps: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] -> [B, C]: the global average pooling every encoder ends with (DARTS cnn/model.py, NAS-Bench-201,
    ResNet). An encoder's `forward_maps(x)` is the map before it, so `forward(x) == global_pool(forward_maps(x))`."""
    return F.adaptive_avg_pool2d(maps, 1).flatten(1)


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
    becomes a 3x3/1 conv and the first max-pool is removed. `forward_features` returns the 512 globally pooled
    features (`forward_maps`: the 512-channel map of layer4 before that pooling); `forward` the logits of a linear
    classifier when num_classes > 0, else the features."""

    feature_dim = 512

    def __init__(self, in_channels: int = 3, num_classes: int = 0):
        super().__init__()
        from torchvision.models import resnet18  # heavy import, only when this baseline is built

        net = resnet18(weights=None)
        net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        net.fc = nn.Identity()
        self.net = net
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.feature_dim, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.net(x))

    def forward_maps(self, x: torch.Tensor) -> torch.Tensor:
        """torchvision's ResNet.forward up to its average pool."""
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))


def is_backbone(arch: Any) -> bool:
    return isinstance(arch, str) and arch.strip().lower() in BACKBONES


def describe(encoder: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Parameters and FLOPs of a network, as retrain and eval report them. `params` leaves out the auxiliary tower
    and the classifier (what networks of different tasks share); a network with a classifier also reports
    `params_with_classifier`, the figure DARTS's tables quote."""
    total = count_parameters(encoder)
    head = sum(p.numel() for p in getattr(encoder, "classifier", nn.Identity()).parameters())
    out = {"params": total - head, "flops": count_flops(encoder, input_shape)}
    if head:
        out["params_with_classifier"] = total
    return out
