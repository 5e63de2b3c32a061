"""ConRec, contrastive reconstruction (Dippel, Vogler, Hoehne, "Towards Fine-grained Visual Representations by
Combining Contrastive Learning with Image Reconstruction and Attention-weighted Pooling", ICML 2021 workshop,
arXiv 2104.04323; code bayer-science-for-a-better-life/contrastive-reconstruction).

SimCLR's framework with two additions, on one encoder with two heads:
1. self-reconstruction: each augmented view is corrupted (local pixel shuffling, in-painting or out-painting, one
   of the three per image: augmentations/masking.py `transform_image`), the corrupted view goes through the
   encoder, and a decoder on the encoder's last feature map reconstructs the uncorrupted view (MSE);
2. attention-weighted pooling in the contrastive branch: the map is pooled with weights from a small 1x1-conv
   scorer, normalised to sum to 1 (models/conrec.py `attention_ga_pooling`), instead of the global average.

    L = lambda_con * NT-Xent(g(pool_att(f(c(x1)))), g(pool_att(f(c(x2)))); t) + lambda_rec * MSE(d(f(c(x))), x)

with lambda_rec = 100, lambda_con = 1, t = 0.5 (README's ConRec command: `--lambda-rec=100.0 --lambda-con=1.0
-t 0.5`; train.py weighs the two Keras losses with those factors). The MSE is measured in [0, 1] pixel units, as
the reference's (its views are [0, 1] images with a sigmoid output); here the views are normalised, so the error
is multiplied back by the normalisation's std (`Batch.pixel_stats`). SimCLR + attention pooling, the paper's
other baseline, is `reconstruction_weight = 0, corruption = false`.

Differences from the reference, forced by searching architectures: the reference encoder is a U-Net whose decoder
reads skip connections; an arbitrary supernet or evaluation network has none, so `MapDecoder` decodes the last map
alone (3 up-sampling stages, as the U-Net of depth 4 has). Its projection head has 3 layers; here it is SimCLR's
2-layer head shared by every objective. For grey images the reference adds a fourth corruption (a Bezier
intensity curve); here every image draws from the three colour corruptions. Evaluation (`ssnas eval`) reads the
encoder's globally pooled features, as for every objective; the reference evaluates the attention-pooled vector.

All randomness of `forward` (which corruption, where, the attention dropout) comes from a generator seeded by the
batch's ids and a step counter, so repeated forwards on one batch agree (second-order DARTS) and resumes are exact.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ssnas.config import Tunable
from ssnas.errors import UserError
from ssnas.nas.network import global_pool
from ssnas.objectives.simclr import nt_xent
from ssnas.training.heads import (ATTENTION_NORMS, AttentionPool, MapDecoder, check_has_maps, feature_maps,
                                 input_channels, pixel_mse)
from ssnas.training.objective import Batch, Objective, batch_seed, projection_head

POOLINGS = ("attention", "mean")


# ---- the corruptions of augmentations/masking.py, batched (colour branch of transform_image) --------------------

def _randint(low: torch.Tensor | int, high: torch.Tensor | int, shape: tuple[int, ...],
             generator: torch.Generator) -> torch.Tensor:
    """Integers uniform in [low, high) like tf.random.uniform(minval, maxval, int32); an empty range gives low."""
    low, high = torch.as_tensor(low), torch.as_tensor(high)
    span = (high - low).clamp_min(1)
    return low + (torch.rand(shape, generator=generator) * span).long().clamp_max(span - 1)


def _continue(shape: tuple[int, int], prob: float, generator: torch.Generator, first_sure: bool = False) -> torch.Tensor:
    """[B, K] bools for `while count > 0 and rand() < prob`: block k happens iff the first k + 1 draws passed."""
    passed = torch.rand(shape, generator=generator) < prob
    if first_sure:
        passed[:, 0] = True
    return passed.long().cumprod(dim=1).bool()


def _boxes(y: torch.Tensor, x: torch.Tensor, bh: torch.Tensor, bw: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[B, K, h, w] masks of the boxes rows y..y+bh-1, columns x..x+bw-1."""
    rows, cols = torch.arange(h), torch.arange(w)
    in_y = (rows >= y[..., None]) & (rows < (y + bh)[..., None])
    in_x = (cols >= x[..., None]) & (cols < (x + bw)[..., None])
    return in_y[..., :, None] & in_x[..., None, :]


def in_painting(b: int, h: int, w: int, generator: torch.Generator, count: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """masking.py `image_in_painting`: up to `count` blocks of 14-20% of the side (each after the first only with
    p = 0.95) filled with one random colour each; returns (masks [B, K, h, w], block index of each colour draw)."""
    bh = _randint(int(h * 0.14), int(h * 0.2), (b, count), generator)
    bw = _randint(int(w * 0.14), int(w * 0.2), (b, count), generator)
    y = torch.minimum(_randint(3, h - bh - 3, (b, count), generator), h - bh)
    x = torch.minimum(_randint(3, w - bw - 3, (b, count), generator), w - bw)
    active = _continue((b, count), 0.95, generator)
    return _boxes(y, x, bh, bw, h, w) & active[..., None, None], active


def out_painting_keep(b: int, h: int, w: int, generator: torch.Generator, count: int = 5) -> torch.Tensor:
    """masking.py `image_out_painting`: [B, h, w] true where the image survives, the union of up to `count` windows
    of 4/7 to 5/7 of the side (the first always, later ones with p = 0.95); everything else is one random colour."""
    bh = h - _randint(2 * h // 7, 3 * h // 7, (b, count), generator)
    bw = w - _randint(2 * w // 7, 3 * w // 7, (b, count), generator)
    y = torch.minimum(_randint(torch.minimum(torch.tensor(3), h - bh), h - bh - 3, (b, count), generator), h - bh)
    x = torch.minimum(_randint(torch.minimum(torch.tensor(3), w - bw), w - bw - 3, (b, count), generator), w - bw)
    active = _continue((b, count), 0.95, generator, first_sure=True)
    return (_boxes(y, x, bh, bw, h, w) & active[..., None, None]).any(dim=1)


def local_pixel_shuffling(x: torch.Tensor, generator: torch.Generator, count: int = 15, prob: float = 0.99) -> torch.Tensor:
    """masking.py `local_pixel_shuffling`: up to `count` blocks of 1 to 20% of the side (each with p = `prob`), the
    pixels of each permuted (all channels together); every block reads the original image. `x` is [C, h, w]."""
    c, h, w = x.shape
    out = x.clone()
    bh = _randint(1, int(h * 0.2), (count,), generator)
    bw = _randint(1, int(w * 0.2), (count,), generator)
    ys = _randint(0, h - bh, (count,), generator)
    xs = _randint(0, w - bw, (count,), generator)
    active = _continue((1, count), prob, generator)[0]
    for k in range(count):
        if not bool(active[k]):
            break
        y0, x0, dh, dw = int(ys[k]), int(xs[k]), int(bh[k]), int(bw[k])
        block = x[:, y0:y0 + dh, x0:x0 + dw].reshape(c, -1)
        perm = torch.randperm(dh * dw, generator=generator).to(x.device)
        out[:, y0:y0 + dh, x0:x0 + dw] = block[:, perm].reshape(c, dh, dw)
    return out


def corrupt(views: torch.Tensor, generator: torch.Generator,
            pixel_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """ConRec's input corruption of a batch of normalised views [B, C, h, w] (masking.py `transform_image`, colour
    branch): per image, with probability 1/3 each, local pixel shuffling, in-painting or out-painting. Random
    colours are uniform in [0, 1) per channel, normalised with `pixel_stats` (mean, std)."""
    b, c, h, w = views.shape
    dev = views.device
    mean, std = pixel_stats if pixel_stats is not None else (torch.zeros(1, c, 1, 1), torch.ones(1, c, 1, 1))
    mean, std = mean.to(dev, views.dtype), std.to(dev, views.dtype)
    r = torch.rand(b, generator=generator)
    mode = torch.where(r <= 0.33, 0, torch.where(r <= 0.66, 1, 2))  # shuffle, in-paint, out-paint
    out = views.clone()
    # in-painting: later blocks paint over earlier ones, as the reference's sequential scatter does
    masks, _ = in_painting(b, h, w, generator)
    colours = (torch.rand(b, masks.shape[1], c, generator=generator).to(dev, views.dtype) - mean.view(1, 1, c)) / std.view(1, 1, c)
    painted = views.clone()
    for k in range(masks.shape[1]):
        painted = torch.where(masks[:, k, None].to(dev), colours[:, k, :, None, None], painted)
    out = torch.where((mode == 1).view(b, 1, 1, 1).to(dev), painted, out)
    # out-painting: the kept windows over one random colour
    keep = out_painting_keep(b, h, w, generator)
    fill = (torch.rand(b, c, generator=generator).to(dev, views.dtype) - mean.view(1, c)) / std.view(1, c)
    outside = torch.where(keep[:, None].to(dev), views, fill[:, :, None, None])
    out = torch.where((mode == 2).view(b, 1, 1, 1).to(dev), outside, out)
    for i in torch.nonzero(mode == 0).flatten().tolist():
        out[i] = local_pixel_shuffling(views[i], generator)
    return out


# ---- the objective ----------------------------------------------------------------------------------------------

@dataclass
class ConRecOptions:
    """Defaults: the reference README's ConRec command (`--lambda-rec=100.0 --lambda-con=1.0 --encoder-reduction
    ga_attention --aug-impl conrec`) and models/conrec.py."""

    reconstruction_weight: float = field(default=100.0, metadata={"range": "[0, 1e6]"})  # --lambda-rec 100 (MSE in [0, 1] pixel units)
    contrastive_weight: float = field(default=1.0, metadata={"range": "[0, 1e6]"})  # --lambda-con 1
    corruption: bool = True  # --aug-impl conrec: corrupt the input, reconstruct the clean view (simclr: off)
    # --encoder-reduction ga_attention ("mean": ga_pooling, SimCLR's global average)
    pooling: str = field(default="attention", metadata={"choices": POOLINGS})
    # reference: sigmoid mask, divided by its sum; "softmax" is the other way to sum to 1
    attention_norm: str = field(default="sigmoid", metadata={"choices": ATTENTION_NORMS})
    # attention_ga_pooling(dropout=True): Dropout(0.5) before the scorer
    attention_dropout: float = field(default=0.5, metadata={"range": "[0, 1)"})
    decoder_blocks: int = field(default=3, metadata={"range": "[1, 8]"})  # the U-Net of depth 4 up-samples 3 times


class ConRec(Objective):
    name = "conrec"
    Options = ConRecOptions
    uses = frozenset({"temperature", "proj_dim", "proj_hidden_dim"})
    tunable = (
        Tunable("objective.reconstruction_weight", "float", 1.0, 1000.0, log=True,
                why="ConRec lambda_rec; reference --lambda-rec 100 (pixel-unit MSE), a decade and more either way"),
    )

    @classmethod
    def check_options(cls, o: ConRecOptions) -> None:
        """Beyond each option's declared range: the two weights must not both be 0."""
        if not (o.reconstruction_weight or o.contrastive_weight):
            raise UserError(f"conrec options: reconstruction_weight and contrastive_weight must not both be 0; "
                            f"got {o.reconstruction_weight} and {o.contrastive_weight}")

    def __init__(self, cfg, feature_dim: int, num_classes: int = 0):
        super().__init__(cfg, feature_dim, num_classes)
        o = self.opts
        self.head: nn.Module = projection_head(feature_dim, cfg.proj_hidden_dim, cfg.proj_dim)
        self.attention = AttentionPool(feature_dim, o.attention_dropout, o.attention_norm) if o.pooling == "attention" else None
        self.decoder: MapDecoder | None = None  # built in attach: it needs the image channels
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def attach(self, encoder: nn.Module) -> None:
        check_has_maps(encoder, self.name)
        if self.opts.reconstruction_weight > 0 and self.decoder is None:
            device = next(self.head.parameters()).device
            self.decoder = MapDecoder(self.feature_dim, input_channels(encoder), self.opts.decoder_blocks).to(device)

    def pool(self, maps: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.attention(maps, generator) if self.attention is not None else global_pool(maps)

    def forward(self, encoder: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        o = self.opts
        generator = torch.Generator().manual_seed(batch_seed(batch.index, int(self.step)))
        clean = torch.cat(batch.views[:2])
        x = corrupt(clean, generator, batch.pixel_stats) if o.corruption else clean
        # one encoder pass over both views, as objectives/simclr.py does (BN sees the 2N batch)
        maps = feature_maps(encoder, x)
        z1, z2 = self.head(self.pool(maps, generator)).chunk(2)
        contrastive = nt_xent(z1, z2, self.cfg.temperature, batch.ranks)  # under torchrun: every rank's views
        loss = o.contrastive_weight * contrastive
        out = {"nt_xent": contrastive.detach()}
        if self.decoder is not None:
            std = batch.pixel_stats[1] if batch.pixel_stats is not None else None
            reconstruction = pixel_mse(self.decoder(maps, tuple(clean.shape[-2:])), clean, std)
            loss = loss + o.reconstruction_weight * reconstruction
            out["reconstruction"] = reconstruction.detach()
        return {"loss": loss, **out}

    @torch.no_grad()
    def after_step(self, encoder: nn.Module, progress: float) -> None:
        self.step += 1

    def embed(self, encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.pool(feature_maps(encoder, x))), dim=1)

