"""Multi-task self-supervision for images, after MS^2L (Lin, Song, Yang, Liu, "MS2L: Multi-Task Self-Supervised
Learning for Skeleton Based Action Recognition", ACM MM 2020, arXiv 2010.05599; code LanglandsLin/MS2L).

MS^2L trains one encoder on three pretext tasks at once, so that they regularise each other and the features are
more general than one reconstruction task gives: motion prediction (decode the whole sequence from one whose last
30% of frames are masked), jigsaw-puzzle recognition (classify which of the 3! orders the sequence's 3 temporal
segments were shuffled into) and contrastive learning. procedure.py sums the three losses unweighted:
`loss = motion + jigsaw + contrastive`. Transposed to images, as one objective with one weight per task:

    L = w_c * NT-Xent(z(x1), z(x2); t)                       contrastive (SimCLR's, on two weak views)
      + w_p * MSE over the masked patches of d(f(m(x1)))     prediction: a share `mask_ratio` of the patches of an
                                                             mask_grid x mask_grid grid is set to 0 (the data
                                                             mean) and predicted back from the rest
      + w_j * CE(h([f(t_P(1)), ..., f(t_P(n))]), P)          jigsaw: the view cut into grid x grid tiles, the tiles
                                                             shuffled by permutation P of a fixed set, each tile
                                                             encoded alone, a classifier on their concatenated
                                                             features names P (Noroozi & Favaro, ECCV 2016)

Defaults: the weights are 1 (MS^2L's unweighted sum); mask_ratio 0.3 (config.py `mask_ratio = 0.3`); a 2x2 grid
whose 4! = 24 orders are all used, as MS^2L uses all 3! orders of its 3 segments (config.py `seg_num = 3`,
model.py `permutations(range(seg_num))`). With a 3x3 grid the set is the `permutations` orders of largest minimum
Hamming distance, chosen greedily and deterministically (Noroozi & Favaro's Algorithm 1 picks at random; here ties
go to the lexicographically first order, so every run has the same set).

Differences from MS^2L, forced by images: the prediction error is taken on the masked patches only (held-out patch
prediction; MS^2L's MSE covers the whole sequence), the decoder is `MapDecoder` on the encoder's last map (MS^2L
decodes with a GRU), and the contrastive term is NT-Xent between two augmented views at the shared temperature
(MS^2L contrasts its original, masked and shuffled sequences with their mean at t = 0.9). Randomness of `forward`
(masks, permutations) comes from a generator seeded by the batch's ids and a step counter, so repeated forwards
on one batch agree (second-order DARTS) and resumes are exact.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ssnas.config import Tunable
from ssnas.errors import UserError
from ssnas.objectives.simclr import nt_xent
from ssnas.training.heads import MapDecoder, check_has_maps, feature_maps, input_channels, pixel_mse
from ssnas.training.objective import Batch, Objective, batch_seed, projection_head


# ---- the jigsaw -------------------------------------------------------------------------------------------------

@lru_cache(maxsize=8)
def jigsaw_permutations(tiles: int, count: int) -> torch.Tensor:
    """`count` orders of `tiles` tiles, [count, tiles]. All of them (lexicographic order) when count = tiles!;
    otherwise the greedy maximal-minimum-Hamming-distance set: start from the identity, then repeatedly add the
    order farthest (in minimum Hamming distance) from those chosen, ties to the lexicographically first."""
    if not 2 <= count <= math.factorial(tiles):
        raise ValueError(f"{tiles} tiles have {math.factorial(tiles)} orders; asked for {count}")
    every = np.array(list(itertools.permutations(range(tiles))), dtype=np.int8)
    if count == len(every):
        return torch.from_numpy(every.astype(np.int64))
    chosen = [0]
    nearest = (every != every[0]).sum(axis=1)  # each order's distance to the closest chosen one
    for _ in range(count - 1):
        pick = int(np.argmax(nearest))  # argmax returns the first maximum: lexicographic ties
        chosen.append(pick)
        nearest = np.minimum(nearest, (every != every[pick]).sum(axis=1))
    return torch.from_numpy(every[chosen].astype(np.int64))


def jigsaw_tiles(x: torch.Tensor, grid: int, orders: torch.Tensor) -> torch.Tensor:
    """Cut images [B, C, H, W] into grid x grid tiles (raster order; a border that does not divide is dropped) and
    shuffle them: slot i of image b holds tile orders[b, i]. Returns [B * grid^2, C, H // grid, W // grid], the
    tiles of image 0 first."""
    b, c, h, w = x.shape
    th, tw = h // grid, w // grid
    tiles = x[:, :, :th * grid, :tw * grid].reshape(b, c, grid, th, grid, tw).permute(0, 2, 4, 1, 3, 5)
    tiles = tiles.reshape(b, grid * grid, c, th, tw)
    picked = tiles[torch.arange(b, device=x.device)[:, None], orders.to(x.device)]
    return picked.reshape(b * grid * grid, c, th, tw)


def patch_mask(b: int, size: tuple[int, int], grid: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """[B, 1, H, W] bools: round(ratio * grid^2) (at least 1) patches of a grid x grid partition, drawn without
    replacement per image, are true (masked)."""
    n = grid * grid
    k = min(n - 1, max(1, round(ratio * n)))
    order = torch.rand(b, n, generator=generator).argsort(dim=1)
    cells = torch.zeros(b, n, dtype=torch.bool)
    cells[torch.arange(b)[:, None], order[:, :k]] = True
    cells = cells.view(b, 1, grid, grid).float()
    return F.interpolate(cells, size=size, mode="nearest").bool()


# ---- the objective ----------------------------------------------------------------------------------------------

@dataclass
class MultiTaskOptions:
    # MS^2L procedure.py: the three losses are summed unweighted
    contrastive_weight: float = field(default=1.0, metadata={"range": "[0, 1e6]"})
    prediction_weight: float = field(default=1.0, metadata={"range": "[0, 1e6]"})
    jigsaw_weight: float = field(default=1.0, metadata={"range": "[0, 1e6]"})
    mask_ratio: float = field(default=0.3, metadata={"range": "(0, 1)"})  # MS^2L config.py mask_ratio = 0.3
    # patches of the prediction task: a 4x4 grid (8x8 pixels on CIFAR's 32x32 views)
    mask_grid: int = field(default=4, metadata={"range": "[2, 64]"})
    jigsaw_grid: int = field(default=2, metadata={"choices": (2, 3)})  # tiles: a 2x2 grid (3: 3x3)
    # all 4! orders, as MS^2L uses all 3! orders of its segments (at most 1000 are drawn for a 3x3 grid)
    jigsaw_permutations: int = field(default=24, metadata={"range": "[2, 1000]"})
    decoder_blocks: int = field(default=3, metadata={"range": "[1, 8]"})  # MapDecoder stages (the same decoder as ConRec's)


class MultiTask(Objective):
    name = "multitask"
    Options = MultiTaskOptions
    uses = frozenset({"temperature", "proj_dim", "proj_hidden_dim"})
    tunable = (
        Tunable("objective.prediction_weight", "float", 0.1, 10.0, log=True,
                why="MS^2L sums its tasks unweighted (weight 1); a decade either way"),
        Tunable("objective.jigsaw_weight", "float", 0.1, 10.0, log=True,
                why="MS^2L sums its tasks unweighted (weight 1); a decade either way"),
        Tunable("objective.mask_ratio", "float", 0.1, 0.75, why="MS^2L masks 30% (mask_ratio 0.3); MAE-style up to 75%"),
    )

    @classmethod
    def check_options(cls, o: MultiTaskOptions) -> None:
        """Beyond each option's declared range: not every weight 0, and no more orders than the tiles have."""
        weights = (o.contrastive_weight, o.prediction_weight, o.jigsaw_weight)
        if not any(weights):
            raise UserError(f"multitask options: the task weights must not all be 0; got {weights}")
        most = min(math.factorial(o.jigsaw_grid ** 2), 1000)
        if o.jigsaw_permutations > most:
            raise UserError(f"multitask option jigsaw_permutations must be in [2, {most}] for a {o.jigsaw_grid}x"
                            f"{o.jigsaw_grid} grid, got {o.jigsaw_permutations}")

    def __init__(self, cfg, feature_dim: int, num_classes: int = 0):
        super().__init__(cfg, feature_dim, num_classes)
        o = self.opts
        self.head: nn.Module = projection_head(feature_dim, cfg.proj_hidden_dim, cfg.proj_dim)
        tiles = o.jigsaw_grid ** 2
        self.register_buffer("orders", jigsaw_permutations(tiles, o.jigsaw_permutations).clone())
        self.jigsaw_head = (projection_head(tiles * feature_dim, cfg.proj_hidden_dim or feature_dim,
                                            o.jigsaw_permutations) if o.jigsaw_weight > 0 else None)
        self.decoder: MapDecoder | None = None  # built in attach: it needs the image channels
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def attach(self, encoder: nn.Module) -> None:
        if self.opts.prediction_weight > 0 and self.decoder is None:
            check_has_maps(encoder, self.name)
            self.decoder = MapDecoder(self.feature_dim, input_channels(encoder), self.opts.decoder_blocks).to(self.orders.device)

    def forward(self, encoder: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        o = self.opts
        generator = torch.Generator().manual_seed(batch_seed(batch.index, int(self.step)))
        x1, x2 = batch.views[0], batch.views[1]
        b = x1.shape[0]
        out: dict[str, torch.Tensor] = {}
        loss = x1.new_zeros((), dtype=torch.float32)
        if o.contrastive_weight > 0:
            z1, z2 = self.head(encoder(torch.cat([x1, x2]))).chunk(2)
            contrastive = nt_xent(z1, z2, self.cfg.temperature, batch.ranks)  # under torchrun: every rank's views
            loss = loss + o.contrastive_weight * contrastive
            out["nt_xent"] = contrastive.detach()
        if self.decoder is not None:
            size = tuple(x1.shape[-2:])
            mask = patch_mask(b, size, o.mask_grid, o.mask_ratio, generator).to(x1.device)
            masked = x1.masked_fill(mask, 0.0)  # 0 = the dataset's mean colour in normalised units
            std = batch.pixel_stats[1] if batch.pixel_stats is not None else None
            prediction = pixel_mse(self.decoder(feature_maps(encoder, masked), size), x1, std, mask)
            loss = loss + o.prediction_weight * prediction
            out["prediction"] = prediction.detach()
        if self.jigsaw_head is not None:
            labels = torch.randint(0, len(self.orders), (b,), generator=generator).to(x2.device)
            tiles = jigsaw_tiles(x2, o.jigsaw_grid, self.orders[labels])
            logits = self.jigsaw_head(encoder(tiles).reshape(b, -1))
            jigsaw = F.cross_entropy(logits.float(), labels)
            loss = loss + o.jigsaw_weight * jigsaw
            out["jigsaw"] = jigsaw.detach()
            out["jigsaw_accuracy"] = (logits.argmax(1) == labels).float().mean().detach()
        return {"loss": loss, **out}

    @torch.no_grad()
    def after_step(self, encoder: nn.Module, progress: float) -> None:
        self.step += 1

    def embed(self, encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(encoder(x)), dim=1)
