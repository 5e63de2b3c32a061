"""Heads that look at space: the objectives that reconstruct or attend (ConRec, the multi-task objective) build
them on the encoder's last feature map, whatever encoder the spaces produce.

- `feature_maps(encoder, x)`: the map `[B, C, h, w]` an encoder pools into its features (`forward_maps`, which
  every supernet, every space's evaluation network and resnet18 define; `forward(x)` is its global average).
- `MapDecoder`: any map size -> the view's exact size, by a few (bilinear resize, conv 3x3, BN, ReLU) blocks whose
  sizes step geometrically from the map's to the view's, then a 1x1 conv to the image channels.
- `AttentionPool`: ConRec's attention-weighted pooling (Dippel et al. 2021, Sec. 3; reference
  models/conrec.py `attention_ga_pooling`): a 1x1-conv scorer gives one weight per position, the weights are
  normalised to sum to 1, and the pooled vector is the weighted sum of the map's columns.
- `pixel_mse`: a reconstruction error measured in [0, 1] pixel units on normalised views.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssnas.errors import UserError

ATTENTION_NORMS = ("sigmoid", "softmax")


def feature_maps(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The encoder's last feature map [B, feature_dim, h, w], before its global pooling."""
    maps = getattr(encoder, "forward_maps", None)
    if maps is None:
        raise UserError(f"this objective needs the feature map before pooling, but {type(encoder).__name__} has no "
                        f"forward_maps(x); give it one (docs/spaces.md) or choose another objective")
    return maps(x)


def check_has_maps(encoder: nn.Module, objective: str) -> None:
    """Refuse, before training, an encoder without `forward_maps`."""
    if not callable(getattr(encoder, "forward_maps", None)):
        raise UserError(f"objective {objective!r} reads the encoder's feature map, but {type(encoder).__name__} has "
                        f"no forward_maps(x); give it one (docs/spaces.md) or choose another objective")


def input_channels(encoder: nn.Module) -> int:
    """The image channels an encoder reads: its first convolution's input channels (what a decoder must output)."""
    for m in encoder.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    raise UserError(f"cannot tell how many image channels {type(encoder).__name__} reads: it has no Conv2d")


def seeded_dropout(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Inverted dropout whose mask comes from `generator` (a CPU generator), so a forward pass can be repeated
    exactly (second-order DARTS evaluates the loss several times on one batch)."""
    if p <= 0:
        return x
    keep = torch.rand(x.shape, generator=generator).to(x.device) >= p
    return x * keep.to(x.dtype) / (1.0 - p)


def attention_pool(maps: torch.Tensor, scores: torch.Tensor, norm: str = "sigmoid") -> tuple[torch.Tensor, torch.Tensor]:
    """Pool `maps` [B, C, h, w] with one score per position, `scores` [B, 1, h, w]; returns (pooled [B, C],
    weights [B, h*w], each row summing to 1).

    sigmoid (ConRec): w_i = sigmoid(s_i) / sum_j sigmoid(s_j), i.e. GAP(m * f) / GAP(m) with m = sigmoid(s), as
    the reference divides the average of the masked features by the average of the mask;
    softmax: w = softmax(s) over the positions."""
    b, c = maps.shape[:2]
    s = scores.reshape(b, -1).float()
    if norm == "sigmoid":
        m = torch.sigmoid(s)
        weights = m / m.sum(dim=1, keepdim=True)
    elif norm == "softmax":
        weights = F.softmax(s, dim=1)
    else:
        raise ValueError(f"attention norm must be one of {ATTENTION_NORMS}, got {norm!r}")
    pooled = torch.einsum("bcn,bn->bc", maps.reshape(b, c, -1).float(), weights)
    return pooled.to(maps.dtype), weights


class AttentionPool(nn.Module):
    """ConRec's attention branch: dropout, 1x1 convs to C/2, C/4, C/8 (each BN + ReLU), a 1x1 conv to one score
    per position; the pooled vector weighs the (undropped) map by the normalised scores (`attention_pool`)."""

    def __init__(self, channels: int, dropout: float = 0.5, norm: str = "sigmoid"):
        super().__init__()
        if norm not in ATTENTION_NORMS:
            raise ValueError(f"attention norm must be one of {ATTENTION_NORMS}, got {norm!r}")
        self.dropout, self.norm = dropout, norm
        layers: list[nn.Module] = []
        c_in = channels
        for div in (2, 4, 8):  # reference: filters = [C // 2, C // 4, C // 8]
            c_out = max(channels // div, 1)
            layers += [nn.Conv2d(c_in, c_out, 1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        layers.append(nn.Conv2d(c_in, 1, 1))
        self.scorer = nn.Sequential(*layers)

    def scores(self, maps: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = seeded_dropout(maps, self.dropout, generator) if self.training and generator is not None else maps
        return self.scorer(x)

    def forward(self, maps: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return attention_pool(maps, self.scores(maps, generator), self.norm)[0]


def decoder_sizes(start: tuple[int, int], end: tuple[int, int], blocks: int) -> list[tuple[int, int]]:
    """The map size after each decoder block: geometric steps from `start` to exactly `end`."""
    out = []
    for k in range(1, blocks + 1):
        out.append(tuple(max(1, round(s * (e / s) ** (k / blocks))) for s, e in zip(start, end)))
    out[-1] = tuple(end)
    return out  # type: ignore[return-value]


class MapDecoder(nn.Module):
    """Feature map -> image. ConRec decodes with a U-Net (3 up-sampling stages of conv-BN-ReLU); an arbitrary
    encoder has no skip connections to offer, so this decoder reads the last map only. Each of `blocks` stages
    resizes (bilinear) to the next size of `decoder_sizes` and applies conv 3x3 + BN + ReLU, with channels
    halving from the map's (at least `min_width`); a final 1x1 conv gives the image channels. Works from any map
    size to any view size."""

    def __init__(self, in_channels: int, out_channels: int, blocks: int = 3, min_width: int = 8):
        super().__init__()
        if blocks < 1:
            raise ValueError(f"decoder blocks must be >= 1, got {blocks}")
        stages = []
        c = in_channels
        for k in range(1, blocks + 1):
            w = max(in_channels // 2 ** k, min_width)
            stages.append(nn.Sequential(nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w),
                                        nn.ReLU(inplace=True)))
            c = w
        self.stages = nn.ModuleList(stages)
        self.out = nn.Conv2d(c, out_channels, 1)

    def forward(self, maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = maps
        for stage, hw in zip(self.stages, decoder_sizes(tuple(maps.shape[-2:]), tuple(size), len(self.stages))):
            if tuple(x.shape[-2:]) != hw:
                x = F.interpolate(x, size=hw, mode="bilinear", align_corners=False)
            x = stage(x)
        return self.out(x)


def pixel_mse(prediction: torch.Tensor, target: torch.Tensor, std: torch.Tensor | None = None,
              mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error in [0, 1] pixel units between normalised images: ((p - t) * std)^2 averaged over every
    element, or over the elements where `mask` [B, 1 or C, H, W] is true. `std` [1, C, 1, 1] is what the views
    were divided by (None: the images are already in pixel units)."""
    diff = prediction.float() - target.float()
    if std is not None:
        diff = diff * std.to(diff.device, diff.dtype)
    sq = diff.square()
    if mask is None:
        return sq.mean()
    mask = mask.to(sq.dtype).expand_as(sq)
    return (sq * mask).sum() / mask.sum().clamp_min(1.0)
