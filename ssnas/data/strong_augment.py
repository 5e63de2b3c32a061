"""CLSA's "stronger augmentation", batched on the device with a per-sample choice of ops and magnitudes.

CLSA (Wang & Qi, arXiv 2104.07713) makes a strong view by running the weak (MoCo v2 / SimCLR) pipeline and then
RandAugment over a pool of 14 image ops (maple-research-lab/CLSA, data_processing/Multi_FixTransform.py and
RandAugment.py; summarised in papers.md Sec. 4):

    ops = random.choices(pool, k=aug_times)          # with replacement, aug_times = 5
    for op, max_v, bias in ops:
        v = np.random.randint(1, m)                  # 1 .. m-1, m = 10
        if random.random() < 0.5:
            img = op(img, v * max_v / 10 + bias)     # int(v * max_v / 10) + bias for the integer ops

Here every sample draws its own ops, levels, coin flips and signs, and each op runs once per slot on exactly the
samples that drew it (index_select / index_copy_), so a batch costs at most `aug_times` passes of each op over a
share of the batch instead of a Python loop over images. The ops follow PIL's definitions, which the reference
code calls, on float images in [0, 1]; tests check each against PIL.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from ssnas.data.augment import Shard, adjust_brightness, adjust_contrast, adjust_saturation, sample_rand, sample_randint
from ssnas.errors import UserError

PARAMETER_MAX = 10  # RandAugment.py: a level v is scaled by v / PARAMETER_MAX


@dataclass(frozen=True)
class OpSpec:
    """One entry of the pool: how a level v in 1..m-1 becomes the op's magnitude."""

    max_v: float = 0.0
    bias: float = 0.0
    integer: bool = False  # int(v * max_v / 10) + bias instead of v * max_v / 10 + bias
    signed: bool = False  # the reference negates the magnitude with probability 0.5
    geometric: bool = False  # resampling ops, fused into one warp per slot


# (max_v, bias) from RandAugment.fixmatch_augment_pool; `invert` comes from the paper's wider list (and the
# repo's unused my_augment_pool) and is available, but it is not in the default pool.
OPS: dict[str, OpSpec] = {
    "auto_contrast": OpSpec(),
    "brightness": OpSpec(0.9, 0.05),
    "color": OpSpec(0.9, 0.05),
    "contrast": OpSpec(0.9, 0.05),
    "equalize": OpSpec(),
    "identity": OpSpec(),
    "invert": OpSpec(),
    "posterize": OpSpec(4, 4, integer=True),
    "rotate": OpSpec(30, 0, integer=True, signed=True, geometric=True),
    "sharpness": OpSpec(0.9, 0.05),
    "shear_x": OpSpec(0.3, 0, signed=True, geometric=True),
    "shear_y": OpSpec(0.3, 0, signed=True, geometric=True),
    "solarize": OpSpec(256, 0, integer=True),
    "translate_x": OpSpec(0.3, 0, signed=True, geometric=True),
    "translate_y": OpSpec(0.3, 0, signed=True, geometric=True),
}

# The 14-op pool CLSA's strong views use (RandAugment.fixmatch_augment_pool, in its order).
FIXMATCH_POOL: tuple[str, ...] = (
    "auto_contrast", "brightness", "color", "contrast", "equalize", "identity", "posterize", "rotate",
    "sharpness", "shear_x", "shear_y", "solarize", "translate_x", "translate_y")

APPLY_P = 0.5  # each drawn op is applied with probability 0.5 (RandAugment.__call__)


def validate_strong(ops: Sequence[str], aug_times: int, magnitude: int) -> None:
    """UserError for an unknown op name or an out-of-range count or magnitude."""
    unknown = [o for o in ops if o not in OPS]
    if unknown:
        raise UserError(f"unknown strong augmentation op {unknown[0]!r}; available: {', '.join(sorted(OPS))}")
    if not ops:
        raise UserError("the strong augmentation pool is empty; list at least one op (e.g. identity)")
    if aug_times < 0:
        raise UserError(f"aug_times (strong ops per image) must be >= 0, got {aug_times}")
    # the reference asserts 1 <= m <= 10 and draws randint(1, m), which needs m >= 2
    if not 2 <= magnitude <= PARAMETER_MAX:
        raise UserError(f"magnitude m must be in [2, {PARAMETER_MAX}] (levels are drawn from 1..m-1), got {magnitude}")


# ----------------------------------------------------------------------------- plans


@dataclass
class StrongPlan:
    """Per-sample random draws for `aug_times` slots: all [B, k] tensors on the images' device."""

    op: torch.Tensor  # index into the pool
    level: torch.Tensor  # v in 1 .. m-1
    apply: torch.Tensor  # bool: the slot's coin flip (p = 0.5)
    sign: torch.Tensor  # +1 / -1 for the signed (geometric) ops

    def __getitem__(self, rows: Any) -> "StrongPlan":
        return StrongPlan(self.op[rows], self.level[rows], self.apply[rows], self.sign[rows])


def magnitudes(name: str, level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """float64 magnitudes per sample, computed in the reference's order of float operations."""
    spec = OPS[name]
    v = level.to(torch.float64)
    if spec.integer:
        value = torch.floor(v * spec.max_v / PARAMETER_MAX) + spec.bias  # int() of a non-negative value
    else:
        value = v * spec.max_v / PARAMETER_MAX + spec.bias
    return value * sign.to(torch.float64) if spec.signed else value


# ----------------------------------------------------------------------------- pixel ops (PIL definitions)
# All take float [n, C, H, W] in [0, 1] and one magnitude per sample [n]; none changes the value range.


def _to_levels(x: torch.Tensor) -> torch.Tensor:
    """The nearest uint8 level of each value, as float (exact on images that came from uint8)."""
    return torch.round(x * 255.0)


def auto_contrast(x: torch.Tensor, _: torch.Tensor | None = None) -> torch.Tensor:
    """PIL ImageOps.autocontrast: stretch each channel of each image to the full range (constant ones kept)."""
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (x - lo) / span.clamp_min(1e-12), x)


def equalize(x: torch.Tensor, _: torch.Tensor | None = None) -> torch.Tensor:
    """PIL ImageOps.equalize per channel; torchvision's batched kernel reproduces PIL's lookup table."""
    from torchvision.transforms.v2 import functional as TF  # heavy import, only when the op runs

    levels = _to_levels(x).to(torch.uint8)
    return TF.equalize(levels).to(x.dtype) / 255.0


def invert(x: torch.Tensor, _: torch.Tensor | None = None) -> torch.Tensor:
    return 1.0 - x


def posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """PIL ImageOps.posterize: keep the top `bits` bits of each uint8 level (bits = 4..7 here)."""
    step = torch.pow(2.0, 8.0 - bits.to(x.dtype)).view(-1, 1, 1, 1)
    return torch.floor(_to_levels(x) / step) * step / 255.0


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """PIL ImageOps.solarize(img, 256 - v): invert every level >= the threshold (the reference passes 256 - v)."""
    thr = (256.0 - threshold.to(x.dtype)).view(-1, 1, 1, 1)
    return torch.where(_to_levels(x) >= thr, 1.0 - x, x)


def sharpness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance.Sharpness: blend with the SMOOTH-filtered image (kernel [[1,1,1],[1,5,1],[1,1,1]] / 13,
    border pixels left as they are), factor 0 = blurred, 1 = original."""
    c = x.shape[1]
    kernel = torch.ones(3, 3, dtype=x.dtype, device=x.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13.0).expand(c, 1, 3, 3)
    degenerate = x.clone()
    degenerate[:, :, 1:-1, 1:-1] = F.conv2d(x, kernel, groups=c)
    f = factor.to(x.dtype).view(-1, 1, 1, 1)
    return torch.lerp(degenerate, x, f).clamp_(0.0, 1.0)


def _factor(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
    return lambda x, m: fn(x, m.to(x.dtype))


PIXEL_OPS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "auto_contrast": auto_contrast,
    "brightness": _factor(adjust_brightness),  # PIL: blend with black
    "color": _factor(adjust_saturation),  # PIL: blend with the luma image (no-op on grayscale)
    "contrast": _factor(adjust_contrast),  # PIL: blend with the image's mean luma
    "equalize": equalize,
    "invert": invert,
    "posterize": posterize,
    "sharpness": sharpness,
    "solarize": solarize,
}


# ----------------------------------------------------------------------------- geometry


def affine_matrices(names: Sequence[str], kind: torch.Tensor, magnitude: torch.Tensor, height: int,
                    width: int) -> torch.Tensor:
    """PIL's inverse maps [n, 2, 3] (output pixel coordinates -> input), one per sample; `kind` indexes `names`.

    PIL `Image.transform(size, AFFINE, (a, b, c, d, e, f))` reads input (a x + b y + c, d x + e y + f) for output
    (x, y); the reference uses shear_x (1, v, 0, 0, 1, 0), shear_y (1, 0, 0, v, 1, 0), translate_x (1, 0, t, 0, 1, 0)
    with t = int(v * width), translate_y likewise, and `rotate(v)`: counter-clockwise by v degrees about the centre.
    """
    n = kind.shape[0]
    m = magnitude.to(torch.float64)
    one, zero = torch.ones_like(m), torch.zeros_like(m)
    a, b, c, d, e, f = one.clone(), zero.clone(), zero.clone(), zero.clone(), one.clone(), zero.clone()
    for i, name in enumerate(names):
        sel = kind == i
        if name == "shear_x":
            b = torch.where(sel, m, b)
        elif name == "shear_y":
            d = torch.where(sel, m, d)
        elif name == "translate_x":
            c = torch.where(sel, torch.trunc(m * width), c)  # Python int(): towards zero
        elif name == "translate_y":
            f = torch.where(sel, torch.trunc(m * height), f)
        elif name == "rotate":
            theta = torch.deg2rad(m)
            cos, sin = torch.cos(theta), torch.sin(theta)
            cx, cy = width / 2.0, height / 2.0
            # PIL Image.rotate: input = R(-angle) (out - centre) + centre, y pointing down
            a, b, d, e = (torch.where(sel, cos, a), torch.where(sel, -sin, b),
                          torch.where(sel, sin, d), torch.where(sel, cos, e))
            c = torch.where(sel, cx - cos * cx + sin * cy, c)
            f = torch.where(sel, cy - sin * cx - cos * cy, f)
    return torch.stack((a, b, c, d, e, f), dim=1).view(n, 2, 3)


def warp_nearest(x: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour warp with PIL's conventions: pixel centres at +0.5, floor to the source pixel, black
    outside. A gather, not grid_sample, so the rounding matches PIL's exactly."""
    n, c, h, w = x.shape
    coord = torch.float64 if x.device.type != "mps" else torch.float32
    ys = (torch.arange(h, device=x.device, dtype=coord) + 0.5).view(1, h, 1)
    xs = (torch.arange(w, device=x.device, dtype=coord) + 0.5).view(1, 1, w)
    m = matrices.to(device=x.device, dtype=coord).view(n, 6, 1, 1)
    src_x = torch.floor(m[:, 0] * xs + m[:, 1] * ys + m[:, 2]).long()
    src_y = torch.floor(m[:, 3] * xs + m[:, 4] * ys + m[:, 5]).long()
    inside = (src_x >= 0) & (src_x < w) & (src_y >= 0) & (src_y < h)
    flat = (src_y.clamp(0, h - 1) * w + src_x.clamp(0, w - 1)).view(n, 1, h * w).expand(n, c, h * w)
    out = x.reshape(n, c, h * w).gather(2, flat).view(n, c, h, w)
    return out * inside.unsqueeze(1).to(x.dtype)


# ----------------------------------------------------------------------------- the augmentation


class StrongAugment:
    """RandAugment as CLSA uses it, on float images [B, C, H, W] in [0, 1], every sample its own draws."""

    def __init__(self, ops: Sequence[str] = FIXMATCH_POOL, aug_times: int = 5, magnitude: int = 10):
        validate_strong(ops, aug_times, magnitude)
        self.ops = tuple(ops)
        self.aug_times = aug_times
        self.magnitude = magnitude
        self._geometric = [name for name in self.ops if OPS[name].geometric]

    def sample_plan(self, batch: int, generator: torch.Generator, device: torch.device | str,
                    shard: Shard | None = None) -> StrongPlan:
        """Each sample's ops, levels, coin flips and signs (`shard`: its rows of a global batch's draws)."""
        k = self.aug_times
        op = sample_randint(0, len(self.ops), batch, (k,), generator, device, shard)
        level = sample_randint(1, self.magnitude, batch, (k,), generator, device, shard)
        u = sample_rand(batch, (k, 2), generator, device, shard)
        sign = torch.where(u[..., 1] < 0.5, -1.0, 1.0)
        return StrongPlan(op=op, level=level, apply=u[..., 0] < APPLY_P, sign=sign)

    def __call__(self, x: torch.Tensor, generator: torch.Generator, shard: Shard | None = None) -> torch.Tensor:
        return self.apply(x, self.sample_plan(x.shape[0], generator, x.device, shard))

    def apply(self, x: torch.Tensor, plan: StrongPlan) -> torch.Tensor:
        """Run the plan: slot after slot, each op on the samples that drew it (and won the coin flip)."""
        x = x.contiguous()  # NCHW: index_copy_ and the gathers below want a plain layout
        chosen = torch.where(plan.apply, plan.op, -1).cpu()  # the one host sync: who runs what, per slot
        for slot in range(chosen.shape[1]):
            col = chosen[:, slot]
            geo_rows, geo_kind = [], []
            for i, name in enumerate(self.ops):
                rows = (col == i).nonzero().squeeze(1)
                if rows.numel() == 0 or name == "identity":
                    continue
                if OPS[name].geometric:
                    geo_rows.append(rows)
                    geo_kind.append(torch.full_like(rows, self._geometric.index(name)))
                    continue
                idx = rows.to(x.device)
                mag = magnitudes(name, plan.level[idx, slot], plan.sign[idx, slot])
                x.index_copy_(0, idx, PIXEL_OPS[name](x.index_select(0, idx), mag))
            if geo_rows:  # all resampling ops of this slot in one warp
                rows = torch.cat(geo_rows)
                kind = torch.cat(geo_kind).to(x.device)
                idx = rows.to(x.device)
                mag = torch.zeros(idx.shape[0], dtype=torch.float64, device=x.device)
                for g, name in enumerate(self._geometric):
                    sel = kind == g
                    mag = torch.where(sel, magnitudes(name, plan.level[idx, slot], plan.sign[idx, slot]), mag)
                theta = affine_matrices(self._geometric, kind, mag, x.shape[2], x.shape[3])
                x.index_copy_(0, idx, warp_nearest(x.index_select(0, idx), theta))
        return x


class StrongViewMaker:
    """Strong views as CLSA makes them: the weak pipeline on its own crop, then `StrongAugment`, then the same
    normalisation as the weak views (Multi_FixTransform.py: RandAugment is appended to the weak transform)."""

    def __init__(self, weak: Any, strong: StrongAugment):
        self.weak = weak
        self.strong = strong
        # ViewMaker keeps its normalisation private; the strong ops need [0, 1] pixels, so undo and redo it.
        self._mean = weak._mean
        self._std = weak._std

    def __call__(self, images: torch.Tensor, generator: torch.Generator, shard: Shard | None = None) -> torch.Tensor:
        views = self.weak(images, generator, shard)
        mean = self._mean.to(views.device)
        std = self._std.to(views.device)
        x = (views * std + mean).clamp_(0.0, 1.0)
        x = self.strong(x, generator, shard)
        return ((x - mean) / std).contiguous(memory_format=torch.channels_last)
