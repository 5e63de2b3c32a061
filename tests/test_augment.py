"""Tests for ssnas.augment: batched SimCLR views against hand-checked cases and torchvision."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ssnas.data.augment import (
    AugmentConfig,
    ViewMaker,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    bench_augment,
    blur_kernel_size,
    gaussian_blur,
    naive_view,
    rgb_to_gray,
    sample_crop_boxes,
)
from ssnas.errors import UserError

# Every augmentation off: the view must reduce to the plain, identity-resampled image.
OFF = dict(
    crop_scale_min=1.0, crop_scale_max=1.0, crop_ratio_min=1.0, crop_ratio_max=1.0,
    flip_p=0.0, jitter_p=0.0, grayscale_p=0.0,
)


def _images(batch: int, side: int, channels: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, side, side, channels), dtype=torch.uint8, generator=gen)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _maker(channels: int, unit: bool = False, **cfg) -> ViewMaker:
    """unit=True: mean 0, std 1, so outputs are plain [0, 1] intensities."""
    mean, std = ([0.0], [1.0]) if unit else ([0.5], [0.25])
    return ViewMaker(AugmentConfig(**cfg), mean * channels, std * channels)


# ----------------------------------------------------------------------------- shapes and randomness


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("side", [28, 32])
@pytest.mark.parametrize("size", [0, 24])
def test_shape_dtype_and_memory_format(channels: int, side: int, size: int) -> None:
    images = _images(5, side, channels)
    maker = _maker(channels, size=size, blur_p=0.5)
    out_side = size or side
    for out in (maker(images, _gen()), maker.plain(images)):
        assert out.shape == (5, channels, out_side, out_side)
        assert out.dtype == torch.float32
        assert out.is_contiguous(memory_format=torch.channels_last)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("channels", [1, 3])
def test_each_sample_gets_its_own_view(channels: int) -> None:
    images = _images(1, 32, channels).expand(8, -1, -1, -1)
    views = _maker(channels, jitter_p=1.0)(images, _gen(3)).flatten(1)
    gaps = torch.cdist(views, views, p=float("inf"))
    off_diagonal = gaps[~torch.eye(8, dtype=torch.bool)]
    assert off_diagonal.min() > 1e-3


def test_same_seed_same_view_other_seed_other_view() -> None:
    images = _images(6, 32, 3)
    maker = _maker(3, blur_p=0.5)
    first, again, other = maker(images, _gen(7)), maker(images, _gen(7)), maker(images, _gen(8))
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 1e-2


def test_jitter_hits_a_random_subset_of_samples() -> None:
    images = _images(1, 16, 3).expand(64, -1, -1, -1)
    maker = _maker(3, **{**OFF, "jitter_p": 0.5})
    changed = (maker(images, _gen(1)) - maker.plain(images)).flatten(1).abs().amax(1) > 1e-4
    assert 8 < int(changed.sum()) < 56


# ----------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("side", [28, 32])
def test_everything_off_equals_plain(channels: int, side: int) -> None:
    images = _images(4, side, channels)
    maker = _maker(channels, **OFF)
    torch.testing.assert_close(maker(images, _gen()), maker.plain(images), atol=1e-5, rtol=0)


def test_flip_with_full_crop_mirrors_the_image() -> None:
    images = _images(4, 32, 3)
    maker = _maker(3, **{**OFF, "flip_p": 1.0})
    torch.testing.assert_close(maker(images, _gen()), maker.plain(images).flip(-1), atol=1e-5, rtol=0)


def test_quarter_crop_at_half_size_is_an_exact_pixel_block() -> None:
    # Area 1/4 with ratio 1 on 32x32 is a 16x16 box; resampled to 16x16 it must copy pixels exactly,
    # which pins down both the scale and the translation of theta under align_corners=False.
    images = _images(6, 32, 3)
    cfg = {**OFF, "crop_scale_min": 0.25, "crop_scale_max": 0.25, "size": 16}
    views = _maker(3, unit=True, **cfg)(images, _gen(2))
    pixels = images.permute(0, 3, 1, 2).float() / 255
    offsets = set()
    for i in range(6):
        hits = [
            (y, x)
            for y in range(17)
            for x in range(17)
            if (pixels[i, :, y : y + 16, x : x + 16] - views[i]).abs().max() < 1e-5
        ]
        assert hits, f"sample {i} is not a 16x16 block of its image"
        offsets.add(hits[0])
    assert len(offsets) > 1  # translations are drawn per sample


def test_crop_boxes_follow_torchvision_distribution() -> None:
    n, side, scale, ratio = 2000, 32, (0.08, 1.0), (3 / 4, 4 / 3)
    boxes = sample_crop_boxes(n, side, side, scale, ratio, _gen(5))
    top, left, h, w = boxes.unbind(1)
    assert torch.equal(boxes, boxes.round())
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= side).all() and (left + w <= side).all()
    assert (h >= 1).all() and (w >= 1).all()
    torch.manual_seed(5)
    image = torch.zeros(3, side, side)
    reference = [v2.RandomResizedCrop.get_params(image, list(scale), list(ratio)) for _ in range(n)]
    ref_area = sum(hh * ww for _, _, hh, ww in reference) / (n * side * side)
    ref_left = sum(j for _, j, _, _ in reference) / n
    assert abs((h * w).mean().item() / side**2 - ref_area) < 0.04
    assert abs(left.mean().item() - ref_left) < 1.0


def test_crop_falls_back_to_centre_when_no_box_fits() -> None:
    # Full area with ratio in [2, 3] never fits a square: torchvision centres a 32x16 (w x h) box.
    boxes = sample_crop_boxes(4, 32, 32, (1.0, 1.0), (2.0, 3.0), _gen())
    assert boxes.tolist() == [[8.0, 0.0, 16.0, 32.0]] * 4


# ----------------------------------------------------------------------------- colour ops


def test_grayscale_p1_gives_equal_channels_with_601_luma() -> None:
    images = _images(4, 32, 3)
    maker = _maker(3, unit=True, **{**OFF, "grayscale_p": 1.0})
    out, plain = maker(images, _gen()), maker.plain(images)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    luma = 0.299 * plain[:, 0] + 0.587 * plain[:, 1] + 0.114 * plain[:, 2]
    torch.testing.assert_close(out[:, 0], luma, atol=1e-5, rtol=0)


def test_brightness_on_a_constant_image_by_hand() -> None:
    x = torch.full((3, 3, 4, 4), 128 / 255)
    out = adjust_brightness(x, torch.tensor([1.5, 3.0, 0.0]))
    assert out[0].allclose(torch.full((3, 4, 4), 0.75294118), atol=1e-6)  # 128 * 1.5 / 255
    assert torch.equal(out[1], torch.ones(3, 4, 4))  # clamped at 1
    assert torch.equal(out[2], torch.zeros(3, 4, 4))


def _colour_batch(channels: int) -> torch.Tensor:
    x = torch.rand(6, channels, 12, 12, generator=_gen(11))
    if channels == 3:
        x[:, :, 0, :4] = x[:, :1, 0, :4]  # grey pixels: hue undefined, must not give NaN
        x[:, :, 1, :3] = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1)  # pure red
        x[:, 1, 2, :3] = x[:, 0, 2, :3]  # ties between the max channels
    return x


def _per_image(ref, x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    return torch.stack([ref(x[i], float(factors[i])) for i in range(x.shape[0])])


@pytest.mark.parametrize(
    ("ours", "reference", "channels"),
    [
        (adjust_brightness, TF.adjust_brightness, 3),
        (adjust_brightness, TF.adjust_brightness, 1),
        (adjust_contrast, TF.adjust_contrast, 3),
        (adjust_contrast, TF.adjust_contrast, 1),
        (adjust_saturation, TF.adjust_saturation, 3),
        (adjust_saturation, TF.adjust_saturation, 1),
    ],
)
def test_factor_ops_match_torchvision(ours, reference, channels: int) -> None:
    x = _colour_batch(channels)
    factors = torch.tensor([0.0, 0.4, 0.9, 1.0, 1.3, 1.8])
    torch.testing.assert_close(ours(x, factors), _per_image(reference, x, factors), atol=1e-4, rtol=0)


@pytest.mark.parametrize("channels", [1, 3])
def test_hue_matches_torchvision(channels: int) -> None:
    x = _colour_batch(channels)
    shifts = torch.tensor([-0.5, -0.2, 0.0, 0.05, 0.31, 0.5])
    out = adjust_hue(x, shifts)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, _per_image(TF.adjust_hue, x, shifts), atol=1e-3, rtol=0)


def test_gray_matches_torchvision() -> None:
    x = _colour_batch(3)
    torch.testing.assert_close(rgb_to_gray(x), TF.rgb_to_grayscale(x), atol=1e-4, rtol=0)


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_blur_matches_torchvision(kernel_size: int) -> None:
    x = _colour_batch(3)
    sigmas = torch.tensor([0.1, 0.5, 1.0, 1.5, 2.0, 0.7])
    reference = torch.stack(
        [TF.gaussian_blur(x[i], [kernel_size] * 2, [float(s)] * 2) for i, s in enumerate(sigmas)]
    )
    torch.testing.assert_close(gaussian_blur(x, sigmas, kernel_size), reference, atol=1e-4, rtol=0)


def test_tiny_sigma_blur_is_identity_and_kernel_is_a_tenth() -> None:
    x = _colour_batch(3)
    assert torch.equal(gaussian_blur(x, torch.full((6,), 1e-3), 3), x)
    assert (blur_kernel_size(32), blur_kernel_size(96), blur_kernel_size(224)) == (3, 9, 23)


# ----------------------------------------------------------------------------- config


def test_defaults_validate_and_every_field_has_help() -> None:
    AugmentConfig().validate()
    assert all(f.metadata.get("help") for f in fields(AugmentConfig))


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"crop_scale_min": 0.0}, "crop_scale_min"),
        ({"crop_scale_max": 1.5}, "crop_scale_max"),
        ({"crop_scale_min": 0.9, "crop_scale_max": 0.5}, "crop_scale_min"),
        ({"crop_ratio_min": -1.0}, "crop_ratio_min"),
        ({"crop_ratio_max": math.inf}, "crop_ratio_max"),
        ({"crop_ratio_min": 2.0, "crop_ratio_max": 1.5}, "crop_ratio_min"),
        ({"flip_p": 1.5}, "flip_p"),
        ({"jitter_p": -0.1}, "jitter_p"),
        ({"grayscale_p": 2.0}, "grayscale_p"),
        ({"blur_p": math.nan}, "blur_p"),
        ({"jitter_strength": -1.0}, "jitter_strength"),
        ({"jitter_strength": 3.0}, "jitter_strength"),
        ({"size": -1}, "size"),
        ({"size": 2.5}, "size"),
        ({"flip_p": "half"}, "flip_p"),
    ],
)
def test_validate_rejects_and_names_the_field(changes: dict, named: str) -> None:
    cfg = AugmentConfig(**changes)
    with pytest.raises(UserError, match=named):
        cfg.validate()
    with pytest.raises(UserError, match=named):
        ViewMaker(cfg, [0.5] * 3, [0.25] * 3)


# ----------------------------------------------------------------------------- baseline and bench


@pytest.mark.parametrize("channels", [1, 3])
def test_naive_view_shape(channels: int) -> None:
    out = naive_view(_images(3, 28, channels), AugmentConfig(size=32, blur_p=0.5), [0.5] * channels, [0.25] * channels)
    assert out.shape == (3, channels, 32, 32) and out.dtype == torch.float32
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_bench_returns_positive_rates() -> None:
    result = bench_augment(batch_size=4, image_size=16, steps=1)
    assert set(result) == {"batched_images_per_s", "naive_images_per_s", "speedup"}
    assert all(v > 0 and math.isfinite(v) for v in result.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_view_matches_cpu_shapes_and_identity() -> None:
    images = _images(8, 32, 3).cuda()
    gen = torch.Generator(device="cuda").manual_seed(0)
    view = _maker(3, blur_p=0.5)(images, gen)
    assert view.device.type == "cuda" and view.shape == (8, 3, 32, 32)
    assert view.is_contiguous(memory_format=torch.channels_last)
    maker = _maker(3, **OFF)
    torch.testing.assert_close(maker(images, gen), maker.plain(images), atol=1e-5, rtol=0)
