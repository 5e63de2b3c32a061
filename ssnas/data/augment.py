"""Batched SimCLR-style contrastive views, made on the training device.

A per-image PIL/torchvision pipeline in a DataLoader is the bottleneck on a 2-core CPU and starves
a GPU, so every augmentation here works on a whole uint8 batch ``[B, H, W, C]`` at once, with
per-sample random parameters and no Python loop over the batch. Crop and flip share one bilinear
resampling (``affine_grid`` + ``grid_sample``); the colour ops are small pure functions taking one
factor per sample, each checked against ``torchvision.transforms.v2.functional`` in the tests.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ssnas.config import Tunable, check_tree
from ssnas.errors import UserError

# ITU-R BT.601 luma. torchvision uses 0.2989 for red; the difference is below 1e-4 on [0, 1] images.
LUMA = (0.299, 0.587, 0.114)
# torchvision's RandomResizedCrop gives up after 10 rejected boxes and falls back to a centre crop.
CROP_TRIES = 10
# SimCLR App. A: blur sigma drawn uniformly from [0.1, 2.0].
BLUR_SIGMA = (0.1, 2.0)
# A sigma this small makes the Gaussian kernel an exact delta in float32 (exp(-0.5 / 1e-6) == 0),
# so samples that skip the blur can share the batched convolution with the ones that get it.
_NO_BLUR_SIGMA = 1e-3


@dataclass
class AugmentConfig:
    """Random-view settings; defaults are SimCLR's CIFAR-10 recipe."""

    crop_scale_min: float = field(
        default=0.08,  # SimCLR App. A: random resized crop with area fraction in [0.08, 1]
        metadata={"help": "smallest crop area, as a fraction of the image (SimCLR: 0.08)", "range": "(0, 1]"},
    )
    crop_scale_max: float = field(
        default=1.0, metadata={"help": "largest crop area, as a fraction of the image", "range": "(0, 1]"}
    )
    crop_ratio_min: float = field(
        default=3 / 4,  # Inception / torchvision RandomResizedCrop aspect-ratio range
        metadata={"help": "smallest crop aspect ratio w/h (drawn log-uniformly)", "range": "(0, 100]"},
    )
    crop_ratio_max: float = field(
        default=4 / 3, metadata={"help": "largest crop aspect ratio w/h (drawn log-uniformly)", "range": "(0, 100]"}
    )
    flip_p: float = field(default=0.5, metadata={"help": "probability of a horizontal flip", "range": "[0, 1]"})
    jitter_strength: float = field(
        default=0.5,  # SimCLR App. B.9: colour distortion strength s = 0.5 for CIFAR-10
        # the hue shift is 0.2*s, and one beyond half a turn is meaningless (torchvision rejects it)
        metadata={"help": "colour distortion strength s: brightness/contrast/saturation 0.8*s, hue 0.2*s",
                  "range": "[0, 2.5]"},
    )
    jitter_p: float = field(
        default=0.8,  # SimCLR App. A: colour jitter applied with p = 0.8
        metadata={"help": "probability of applying colour jitter to a view", "range": "[0, 1]"},
    )
    grayscale_p: float = field(
        default=0.2,  # SimCLR App. A: random grayscale with p = 0.2
        metadata={"help": "probability of converting a view to grayscale", "range": "[0, 1]"},
    )
    blur_p: float = field(
        default=0.0,  # SimCLR App. B.9: no Gaussian blur for CIFAR-10
        metadata={"help": "probability of a Gaussian blur (kernel a tenth of the side, sigma in [0.1, 2])",
                  "range": "[0, 1]"},
    )
    size: int = field(default=0, metadata={"flag": "--view-size", "range": "[0, 1024]",
                                           "help": "side of the augmented views in pixels; 0 keeps the input size"})

    def check(self) -> None:
        """The rules across fields (each field's own range is declared beside it)."""
        if self.crop_scale_min > self.crop_scale_max:
            raise UserError(f"augment.crop_scale_min (--crop-scale-min) must be <= crop_scale_max "
                            f"({self.crop_scale_max}), got {self.crop_scale_min}")
        if self.crop_ratio_min > self.crop_ratio_max:
            raise UserError(f"augment.crop_ratio_min (--crop-ratio-min) must be <= crop_ratio_max "
                            f"({self.crop_ratio_max}), got {self.crop_ratio_min}")

    def validate(self) -> None:
        """Every field against its declared range, then `check`: a UserError names the field and its flag."""
        check_tree(self, "augment.")


# ----------------------------------------------------------------------------- colour ops
# All take float images [B, C, H, W] in [0, 1] and one factor per sample [B]; all clamp to [0, 1]
# afterwards, as torchvision does, so the order of ops sees the same value range it would there.


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape [B] so it broadcasts against ``like`` ([B, ...])."""
    return values.to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.dim() - 1)))


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """Luma [B, 1, H, W] of an RGB batch; a 1-channel batch is returned as is."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (r * LUMA[0] + g * LUMA[1] + b * LUMA[2]).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """factor * x + (1 - factor) * other, clamped to [0, 1]."""
    return torch.lerp(other.expand_as(x), x, _per_sample(factor, x)).clamp_(0.0, 1.0)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale intensities by a per-sample factor."""
    return (x * _per_sample(factor, x)).clamp_(0.0, 1.0)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with the mean of its own grayscale."""
    mean = rgb_to_gray(x).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(x, mean, factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with its grayscale; no-op for 1-channel images (as in PIL/torchvision)."""
    if x.shape[1] == 1:
        return x
    return _blend(x, rgb_to_gray(x), factor)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``shift`` turns (in [-0.5, 0.5]) per sample; no-op for 1-channel images.

    Uses an exact HSV round trip rather than the cheaper YIQ rotation: YIQ is only an approximation
    of HSV hue, does not keep values in gamut, and would not match torchvision's (PIL's) definition
    that SimCLR's numbers were produced with. The HSV -> RGB step is written in closed form
    (channel n = V - C * clamp(min(k, 4 - k), 0, 1), k = (n + 6h) mod 6) so it needs no gather.
    """
    if x.shape[1] == 1:
        return x
    # Contiguous colour planes: elementwise ops on strided channel views run several times slower on CPU.
    r, g, b = x.transpose(0, 1).contiguous()
    maxc = torch.maximum(torch.maximum(r, g), b)
    chroma = maxc - torch.minimum(torch.minimum(r, g), b)
    # Hue in sextants, picked by the max channel. Grey pixels (chroma 0) have zero numerators,
    # so the clamped denominator gives them hue 0 instead of NaN; chroma scales it away anyway.
    inv_chroma = 1.0 / chroma.clamp_min(1e-12)
    hue6 = torch.where(
        maxc == r,
        (g - b) * inv_chroma,
        torch.where(maxc == g, (b - r) * inv_chroma + 2.0, (r - g) * inv_chroma + 4.0),
    )
    hue6 += 6.0 * _per_sample(shift, hue6)
    channels = []
    for channel_offset in (5.0, 3.0, 1.0):  # R, G, B
        k = _wrap(hue6 + channel_offset, 6.0)
        weight = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
        channels.append(maxc - chroma * weight)
    return torch.stack(channels, dim=1).clamp_(0.0, 1.0)


def _wrap(x: torch.Tensor, period: float) -> torch.Tensor:
    """x mod period, in [0, period); floor-based because torch.remainder is about 2x slower on CPU."""
    return x - torch.floor(x * (1.0 / period)) * period


def blur_kernel_size(side: int) -> int:
    """SimCLR App. A: kernel 10% of the image side, made odd (at least 3)."""
    return max(3, int(0.1 * side) // 2 * 2 + 1)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per sample and reflect padding (as torchvision)."""
    b, c, h, w = x.shape
    half = kernel_size // 2
    taps = torch.linspace(-half, half, kernel_size, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma.to(x).view(-1, 1)) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # [B, K]
    # Fold the batch into channels so one grouped conv applies every sample's own kernel.
    kernel = kernel.repeat_interleave(c, dim=0)  # [B*C, K]
    y = F.pad(x.reshape(1, b * c, h, w), (half, half, half, half), mode="reflect")
    y = F.conv2d(y, kernel.view(b * c, 1, 1, kernel_size), groups=b * c)
    y = F.conv2d(y, kernel.view(b * c, 1, kernel_size, 1), groups=b * c)
    return y.view(b, c, h, w)


# ----------------------------------------------------------------------------- per-sample draws


@dataclass(frozen=True)
class Shard:
    """Rows ``start .. start + n`` of a global batch of ``total`` images: one rank's part of a step when a run is
    spread over several processes (ssnas.runs.distributed).

    Every per-sample draw is made for the whole global batch and only this shard's rows are kept, so the
    generator advances exactly as in one process taking the global batch, and each image gets the crop, flip and
    colours it would get there: N ranks x B images make the views of one process's N*B.
    """

    start: int
    total: int


def sample_rand(n: int, shape: Sequence[int], generator: torch.Generator, device: torch.device | str,
                shard: Shard | None = None) -> torch.Tensor:
    """Uniform draws ``[n, *shape]``, one row per sample (of the shard's global batch, see `Shard`)."""
    if shard is None:
        return torch.rand(n, *shape, generator=generator, device=device)
    return torch.rand(shard.total, *shape, generator=generator, device=device)[shard.start:shard.start + n]


def sample_randint(low: int, high: int, n: int, shape: Sequence[int], generator: torch.Generator,
                   device: torch.device | str, shard: Shard | None = None) -> torch.Tensor:
    """Integers in [low, high) ``[n, *shape]``, one row per sample (of the shard's global batch, see `Shard`)."""
    rows = n if shard is None else shard.total
    out = torch.randint(low, high, (rows, *shape), generator=generator, device=device)
    return out if shard is None else out[shard.start:shard.start + n]


# ----------------------------------------------------------------------------- geometry


def sample_crop_boxes(
    batch: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    shard: Shard | None = None,
) -> torch.Tensor:
    """Per-sample crop boxes [B, 4] = (top, left, h, w) in whole pixels, like RandomResizedCrop.

    Area fraction uniform in ``scale``, aspect ratio log-uniform in ``ratio``; all CROP_TRIES
    candidates are drawn at once and each sample keeps its first one that fits, else the centre
    crop torchvision falls back to. `shard`: the batch is that part of a global batch (see `Shard`).
    """
    t = CROP_TRIES
    u = sample_rand(batch, (2 * t + 2,), generator, device, shard)
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[:, :t])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[:, t : 2 * t])
    # torch.round and Python's round (used by torchvision) both round half to even.
    w = torch.round(torch.sqrt(area * aspect))
    h = torch.round(torch.sqrt(area / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # argmax returns the first maximum
    found = fits.any(dim=1)

    fallback_w, fallback_h = _fallback_crop(height, width, ratio)
    w = torch.where(found, w.gather(1, first).squeeze(1), float(fallback_w))
    h = torch.where(found, h.gather(1, first).squeeze(1), float(fallback_h))
    # Uniform integer offsets in [0, side - crop]; the clamp guards the u -> 1 rounding edge.
    top = torch.minimum(torch.floor(u[:, 2 * t] * (height - h + 1)), height - h)
    left = torch.minimum(torch.floor(u[:, 2 * t + 1] * (width - w + 1)), width - w)
    top = torch.where(found, top, torch.div(height - h, 2, rounding_mode="floor"))
    left = torch.where(found, left, torch.div(width - w, 2, rounding_mode="floor"))
    return torch.stack((top, left, h, w), dim=1)


def _fallback_crop(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """torchvision's fallback: the largest centred box whose aspect ratio is within ``ratio``."""
    in_ratio = width / height
    if in_ratio < ratio[0]:
        return width, int(round(width / ratio[0]))
    if in_ratio > ratio[1]:
        return int(round(height * ratio[1])), height
    return width, height


def crop_flip_theta(boxes: torch.Tensor, flip: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Affine maps [B, 2, 3] from output to input normalised coordinates.

    With align_corners=False, [-1, 1] spans the pixel edges, so a box [left, left + w) maps to
    x in [2 left / W - 1, 2 (left + w) / W - 1]: scale w / W, centre (2 left + w) / W - 1.
    Negating the x scale mirrors the output, which is the horizontal flip, for free.
    """
    top, left, h, w = boxes.unbind(1)
    sign = 1.0 - 2.0 * flip.to(boxes.dtype)
    zero = torch.zeros_like(top)
    row_x = torch.stack((sign * w / width, zero, (2 * left + w) / width - 1), dim=1)
    row_y = torch.stack((zero, h / height, (2 * top + h) / height - 1), dim=1)
    return torch.stack((row_x, row_y), dim=1)


def resample(x: torch.Tensor, theta: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear resampling of every sample through its own affine map.

    Border padding repeats edge pixels like resize-after-crop does at the image edges; inside
    the image the half-pixel rim of a crop reads its real neighbours instead of clamping. No
    antialiasing: fine for crop-then-upscale (the SimCLR case), aliasing when shrinking a lot.
    """
    grid = F.affine_grid(theta, [x.shape[0], x.shape[1], *out_hw], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


# ----------------------------------------------------------------------------- views


def _to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W, C] -> float32 [B, C, H, W] in [0, 1] (a channels_last-strided view of it)."""
    if images.dim() != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"expected a uint8 batch [B, H, W, C] with C in (1, 3), got shape {tuple(images.shape)}")
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    return images.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)


class ViewMaker:
    """Turns a uint8 batch into augmented, normalised float views.

    Every sample gets its own crop, flip, jitter factors, grayscale and blur decisions. The order
    of the four colour-jitter ops is random per *batch*, not per sample as in torchvision (a
    per-sample order would mean running every op in every slot); it costs one tiny host sync.
    """

    def __init__(self, cfg: AugmentConfig, mean: Sequence[float], std: Sequence[float]):
        cfg.validate()
        if len(mean) != len(std) or len(mean) not in (1, 3):
            raise ValueError(f"mean and std need 1 or 3 entries each, got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {list(std)}")
        self.cfg = cfg
        self._mean = torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        self._std = torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)
        self._stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, images: torch.Tensor, generator: torch.Generator, shard: Shard | None = None) -> torch.Tensor:
        """One random view [B, C, S, S] of a uint8 batch [B, H, W, C]; all randomness from ``generator``.
        `shard`: the batch is that part of a global batch, and gets the views one process would make of it there."""
        if generator.device.type != images.device.type:
            raise ValueError(f"generator is on {generator.device}, images on {images.device}; put both on one device")
        cfg = self.cfg
        x = _to_float(images)
        b, c, h, w = x.shape
        dev = x.device

        boxes = sample_crop_boxes(
            b, h, w, (cfg.crop_scale_min, cfg.crop_scale_max), (cfg.crop_ratio_min, cfg.crop_ratio_max), generator, dev,
            shard,
        )
        flip = sample_rand(b, (), generator, dev, shard) < cfg.flip_p
        x = resample(x, crop_flip_theta(boxes, flip, h, w), self._out_size(h, w))

        # Ops whose probability or strength is zero are skipped outright: no wasted passes, and
        # the all-off configuration is exactly the plain view.
        if cfg.jitter_p > 0 and cfg.jitter_strength > 0:
            x = self._jitter(x, generator, shard)
        if cfg.grayscale_p > 0 and c == 3:
            gray = sample_rand(b, (), generator, dev, shard) < cfg.grayscale_p
            x = torch.where(gray.view(b, 1, 1, 1), rgb_to_gray(x).expand_as(x), x)
        if cfg.blur_p > 0:
            u = sample_rand(b, (2,), generator, dev, shard)
            sigma = BLUR_SIGMA[0] + (BLUR_SIGMA[1] - BLUR_SIGMA[0]) * u[:, 1]
            sigma = torch.where(u[:, 0] < cfg.blur_p, sigma, _NO_BLUR_SIGMA)
            x = gaussian_blur(x, sigma, blur_kernel_size(min(x.shape[-2:])))
        return self._normalise(x)

    def plain(self, images: torch.Tensor) -> torch.Tensor:
        """No augmentation: float, normalised, channels_last (resized to cfg.size if it is set)."""
        x = _to_float(images)
        out_hw = self._out_size(*x.shape[-2:])
        if tuple(x.shape[-2:]) != out_hw:
            x = F.interpolate(x, size=out_hw, mode="bilinear", align_corners=False, antialias=True)
        return self._normalise(x)

    def _out_size(self, h: int, w: int) -> tuple[int, int]:
        return (self.cfg.size, self.cfg.size) if self.cfg.size else (h, w)

    def _jitter(self, x: torch.Tensor, generator: torch.Generator, shard: Shard | None) -> torch.Tensor:
        """SimCLR colour jitter: per-sample factors on a Bernoulli(jitter_p) subset of the batch."""
        b, dev, s = x.shape[0], x.device, self.cfg.jitter_strength
        u = sample_rand(b, (5,), generator, dev, shard)
        chosen = u[:, 0] < self.cfg.jitter_p
        lo, hi = max(0.0, 1.0 - 0.8 * s), 1.0 + 0.8 * s

        def draw(col: int, low: float, high: float, identity: float) -> torch.Tensor:
            # Unchosen samples get the identity factor, so the whole batch runs through each op.
            return torch.where(chosen, low + (high - low) * u[:, col], identity)

        ops: list[Callable[[torch.Tensor], torch.Tensor]] = [
            lambda t: adjust_brightness(t, draw(1, lo, hi, 1.0)),
            lambda t: adjust_contrast(t, draw(2, lo, hi, 1.0)),
            lambda t: adjust_saturation(t, draw(3, lo, hi, 1.0)),
            lambda t: adjust_hue(t, draw(4, -0.2 * s, 0.2 * s, 0.0)),
        ]
        order = torch.rand(4, generator=generator, device=dev).argsort().tolist()
        for i in order:
            if x.shape[1] == 1 and i >= 2:  # saturation and hue do not exist for 1-channel images
                continue
            x = ops[i](x)
        return x

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if self._mean.shape[1] not in (1, c):
            raise ValueError(f"mean/std have {self._mean.shape[1]} entries but the images have {c} channels")
        mean, std = self.stats_on(x.device)
        return ((x - mean) / std).contiguous(memory_format=torch.channels_last)

    def stats_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std), each [1, C, 1, 1] on `device`: what views are normalised with."""
        if device not in self._stats:
            self._stats[device] = (self._mean.to(device), self._std.to(device))
        return self._stats[device]


def naive_view(images_uint8: torch.Tensor, cfg: AugmentConfig, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Reference: the usual torchvision.transforms.v2 pipeline, image by image (global torch RNG)."""
    from torchvision.transforms import v2

    cfg.validate()
    h, w = images_uint8.shape[1:3]
    out_hw = (cfg.size, cfg.size) if cfg.size else (h, w)
    s = cfg.jitter_strength
    steps: list[torch.nn.Module] = [
        v2.RandomResizedCrop(
            out_hw, scale=(cfg.crop_scale_min, cfg.crop_scale_max), ratio=(cfg.crop_ratio_min, cfg.crop_ratio_max)
        ),
        v2.RandomHorizontalFlip(cfg.flip_p),
        v2.RandomApply([v2.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=cfg.jitter_p),
        v2.RandomGrayscale(cfg.grayscale_p),
    ]
    if cfg.blur_p > 0:
        k = blur_kernel_size(min(out_hw))
        steps.append(v2.RandomApply([v2.GaussianBlur(k, sigma=BLUR_SIGMA)], p=cfg.blur_p))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    pipeline = v2.Compose(steps)
    # The per-image loop is the point of this baseline: it is what a DataLoader worker would run.
    views = [pipeline(img) for img in images_uint8.permute(0, 3, 1, 2)]
    return torch.stack(views).contiguous(memory_format=torch.channels_last)


def _images_per_s(fn: Callable[[], torch.Tensor], images: int, steps: int, device: torch.device) -> float:
    fn()  # warm-up: first-call allocations and kernel selection are not what we want to time
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return images * steps / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_augment(
    batch_size: int = 256, image_size: int = 32, channels: int = 3, device: str = "cpu", steps: int = 20
) -> dict:
    """Images per second of ViewMaker vs naive_view on one random uint8 batch (default SimCLR config)."""
    if steps < 1 or batch_size < 1:
        raise ValueError("bench_augment needs steps >= 1 and batch_size >= 1")
    dev = torch.device(device)
    generator = torch.Generator(device=dev).manual_seed(0)
    images = torch.randint(
        0, 256, (batch_size, image_size, image_size, channels), dtype=torch.uint8, generator=generator, device=dev
    )
    cfg = AugmentConfig()
    mean, std = [0.5] * channels, [0.25] * channels
    maker = ViewMaker(cfg, mean, std)
    batched = _images_per_s(lambda: maker(images, generator), batch_size, steps, dev)
    naive = _images_per_s(lambda: naive_view(images, cfg, mean, std), batch_size, steps, dev)
    return {"batched_images_per_s": batched, "naive_images_per_s": naive, "speedup": batched / naive}


# What `ssnas tune` may tune in the augmentation, for every objective.
TUNABLE = (
    Tunable("augment.jitter_strength", "float", 0.1, 1.0,
            why="colour distortion strength s; SimCLR App. B.9 uses 0.5 on CIFAR-10"),
    Tunable("augment.crop_scale_min", "float", 0.08, 0.5, why="smallest crop area; SimCLR 0.08, CLSA's weak view 0.2"),
    Tunable("augment.crop_scale_max", "float", 0.6, 1.0,
            why="largest crop area; SimCLR and CLSA 1.0 (always above the smallest)"),
    Tunable("augment.grayscale_p", "float", 0.0, 0.5, why="random grayscale probability; SimCLR App. A: 0.2"),
)
