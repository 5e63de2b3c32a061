"""CLSA's strong augmentation: each batched op against PIL (which the reference code calls), per-sample draws,
and the batched run equal to running every sample on its own."""
from __future__ import annotations

import PIL.Image
import PIL.ImageEnhance
import PIL.ImageOps
import pytest
import torch

from ssnas.data.augment import AugmentConfig, ViewMaker
from ssnas.errors import UserError
from ssnas.data.strong_augment import (
    FIXMATCH_POOL, OPS, StrongAugment, StrongPlan, StrongViewMaker, magnitudes)
from tests.conftest import shared_data_root


def pil_reference(img: PIL.Image.Image, name: str, v: int, negate: bool) -> PIL.Image.Image:
    """The reference ops (maple-research-lab/CLSA data_processing/RandAugment.py) written with PIL calls."""
    spec = OPS[name]
    value = int(v * spec.max_v / 10) + spec.bias if spec.integer else float(v) * spec.max_v / 10 + spec.bias
    if negate and spec.signed:  # the reference flips the sign of the geometric ops only
        value = -value
    if name == "identity":
        return img
    if name == "auto_contrast":
        return PIL.ImageOps.autocontrast(img)
    if name == "equalize":
        return PIL.ImageOps.equalize(img)
    if name == "invert":
        return PIL.ImageOps.invert(img)
    if name in ("brightness", "color", "contrast", "sharpness"):
        enhancer = {"brightness": PIL.ImageEnhance.Brightness, "color": PIL.ImageEnhance.Color,
                    "contrast": PIL.ImageEnhance.Contrast, "sharpness": PIL.ImageEnhance.Sharpness}[name]
        return enhancer(img).enhance(value)
    if name == "posterize":
        return PIL.ImageOps.posterize(img, int(value))
    if name == "solarize":
        return PIL.ImageOps.solarize(img, 256 - value)
    if name == "rotate":
        return img.rotate(value)
    if name == "shear_x":
        return img.transform(img.size, PIL.Image.AFFINE, (1, value, 0, 0, 1, 0))
    if name == "shear_y":
        return img.transform(img.size, PIL.Image.AFFINE, (1, 0, 0, value, 1, 0))
    if name == "translate_x":
        return img.transform(img.size, PIL.Image.AFFINE, (1, 0, int(value * img.size[0]), 0, 1, 0))
    if name == "translate_y":
        return img.transform(img.size, PIL.Image.AFFINE, (1, 0, 0, 0, 1, int(value * img.size[1])))
    raise AssertionError(name)


@pytest.fixture(scope="module")
def cifar_images() -> torch.Tensor | None:
    """A few real CIFAR-10 training images (RGB), or None where the shared tree is missing."""
    root = shared_data_root()
    if root is None:
        return None
    files = [sorted((root / "cifar10" / "train" / cls).iterdir())[0] for cls in ("airplane", "cat", "frog", "ship")]
    arrays = [torch.frombuffer(bytearray(PIL.Image.open(f).convert("RGB").tobytes()), dtype=torch.uint8)
              .view(32, 32, 3) for f in files]
    return torch.stack(arrays)


def _to_pil(img: torch.Tensor) -> PIL.Image.Image:
    arr = img.numpy()
    return PIL.Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)


def _from_pil(img: PIL.Image.Image, channels: int) -> torch.Tensor:
    t = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(img.size[1], img.size[0], -1)
    return t[..., :channels]


def _plan(n: int, op_index: int, level: int, sign: float) -> StrongPlan:
    return StrongPlan(op=torch.full((n, 1), op_index), level=torch.full((n, 1), level),
                      apply=torch.ones(n, 1, dtype=torch.bool), sign=torch.full((n, 1), sign))


# Geometric ops: exact up to a rare rounding tie at a pixel boundary; colour ops: PIL rounds to uint8 at each
# step where the float version does not, so allow a couple of levels.
TOLERANCE = {"brightness": 1.01, "color": 2.01, "contrast": 2.01, "sharpness": 2.01, "auto_contrast": 1.01}


@pytest.mark.parametrize("name", sorted(OPS))
def test_each_op_matches_pil(name, fashion_train, cifar_images):
    batches = [fashion_train.images[:6]] + ([cifar_images] if cifar_images is not None else [])
    aug = StrongAugment(ops=sorted(OPS), aug_times=1)
    for images in batches:
        channels = images.shape[-1]
        x = images.permute(0, 3, 1, 2).float() / 255.0
        for level, sign in ((3, 1.0), (9, -1.0)):
            out = aug.apply(x.clone(), _plan(len(images), aug.ops.index(name), level, sign))
            got = (out * 255.0).permute(0, 2, 3, 1)
            want = torch.stack([_from_pil(pil_reference(_to_pil(img), name, level, sign < 0), channels)
                                for img in images]).float()
            diff = (got - want).abs()
            if OPS[name].geometric:
                assert (diff > 0.5).float().mean() < 0.01, (name, level, sign)
            else:
                assert diff.max() <= TOLERANCE.get(name, 1e-3), (name, level, sign, diff.max())


def test_magnitudes_follow_the_reference_scaling():
    levels = torch.arange(1, 10)
    plus = torch.ones(9)
    assert magnitudes("posterize", levels, plus).tolist() == [4, 4, 5, 5, 6, 6, 6, 7, 7]  # int(v*4/10)+4
    assert magnitudes("solarize", levels, plus).tolist() == [25, 51, 76, 102, 128, 153, 179, 204, 230]
    assert magnitudes("brightness", torch.tensor([1, 9]), torch.ones(2)).tolist() == pytest.approx([0.14, 0.86])
    assert magnitudes("rotate", torch.tensor([5]), -torch.ones(1)).tolist() == [-15]
    assert magnitudes("color", torch.tensor([5]), -torch.ones(1)).tolist() == pytest.approx([0.5])  # unsigned


def test_plan_draws_per_sample_and_follows_the_paper_distribution():
    aug = StrongAugment()
    plan = aug.sample_plan(4096, torch.Generator().manual_seed(0), "cpu")
    assert plan.op.shape == (4096, 5) and len(aug.ops) == 14 == len(FIXMATCH_POOL)
    assert set(plan.level.unique().tolist()) == set(range(1, 10))  # randint(1, 10): 1..9
    assert set(plan.op.unique().tolist()) == set(range(14))  # choices with replacement over the whole pool
    assert abs(plan.apply.float().mean().item() - 0.5) < 0.02
    # different samples draw different op sequences: not one random op for the whole batch
    assert len({tuple(row) for row in plan.op[:64].tolist()}) > 60


def test_strong_augmentation_is_applied_per_sample(fashion_train):
    """64 copies of one real image come out different, and the batched run equals running each sample alone."""
    aug = StrongAugment()
    x = (fashion_train.images[:1].permute(0, 3, 1, 2).float() / 255.0).repeat(64, 1, 1, 1)
    plan = aug.sample_plan(64, torch.Generator().manual_seed(3), "cpu")
    batched = aug.apply(x.clone(), plan)
    alone = torch.cat([aug.apply(x[i:i + 1].clone(), plan[i:i + 1]) for i in range(64)])
    assert torch.allclose(batched, alone, atol=1e-6)  # the batched 3x3 conv may round differently
    distinct = {tuple(img.flatten().tolist()) for img in (batched * 255).round().to(torch.uint8)}
    assert len(distinct) > 32


def test_strong_view_maker_keeps_shape_normalisation_and_determinism(fashion_train):
    mean, std = fashion_train.mean_std()
    weak = ViewMaker(AugmentConfig(size=16), mean, std)
    maker = StrongViewMaker(weak, StrongAugment())
    images = fashion_train.images[:8]
    a = maker(images, torch.Generator().manual_seed(1))
    b = maker(images, torch.Generator().manual_seed(1))
    assert a.shape == (8, 1, 16, 16) and a.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(a, b)
    pixels = a * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    # the strong views differ from the weak views drawn with the same generator state
    assert not torch.allclose(a, weak(images, torch.Generator().manual_seed(1)))


def test_bad_settings_are_user_errors():
    with pytest.raises(UserError, match="unknown strong augmentation op"):
        StrongAugment(ops=("rotate", "warp"))
    with pytest.raises(UserError, match="magnitude"):
        StrongAugment(magnitude=1)
