"""augment.py against the recipe facts (docs/reference/recipes.md, image augmentation and CutMix on
event batches): event-sample augmentation and Mixup/CutMix; each RandAugment op's geometry and values
at a fixed magnitude and sign; the policies' per-op probability and magnitude noise; the fill colours
and CIFAR-100's own statistics; random erasing; both CutMix modes on a hand-checkable event batch."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

import augment
import data
from augment import (POLICIES, EventAugment, MixupCutmix, RandAugmentCIFAR, RandAugmentImageNet, RandomErasing,
                     apply_op, erase_batch, mean_fill, paste_box)

FILL = (125, 123, 114)


def rgb(a):
    """uint8 RGB PIL image from an [H, W] or [H, W, 3] array."""
    a = np.asarray(a, np.uint8)
    return Image.fromarray(np.repeat(a[..., None], 3, axis=-1) if a.ndim == 2 else a)


def red(img):
    return np.asarray(img)[..., 0].astype(float)


def bright_centroids(img, axis):
    """Per row (axis=1) or column (axis=0): the weighted position of the bright pixels (> 150)."""
    m = np.where(red(img) > 150, red(img), 0)
    pos = np.arange(m.shape[axis])
    return (m * (pos if axis == 1 else pos[:, None])).sum(axis) / m.sum(axis)


# ---------------------------------------------------------------------------------------------- event samples, Mixup/CutMix


@pytest.mark.parametrize("op", ["identity", "shear_x", "translate_x", "translate_y", "rotate", "cutout"])
def test_event_augment_same_op_on_every_frame(op):
    torch.manual_seed(0)
    frame = torch.randint(0, 4, (1, 2, 32, 32)).float()
    x = frame.repeat(5, 1, 1, 1)
    for _ in range(10):
        out = EventAugment(ops=(op,))(x)
        assert out.shape == x.shape and out.dtype == x.dtype
        assert all(torch.equal(out[0], out[t]) for t in range(1, 5))


def test_event_augment_flip_and_cutout():
    x = torch.arange(2 * 2 * 4 * 6, dtype=torch.float32).view(2, 2, 4, 6) + 1
    assert torch.equal(EventAugment(flip_p=1.0, ops=("identity",))(x), x.flip(-1))
    assert torch.equal(EventAugment(flip_p=0.0, ops=("identity",))(x), x)
    out = EventAugment(flip_p=0.0, ops=("cutout",))(x)
    zeroed = out == 0
    assert zeroed.any() and torch.equal(zeroed[0], zeroed[1]) and torch.equal(out[~zeroed], x[~zeroed])
    with pytest.raises(ValueError, match="unknown EventAugment op 'solarize'"):
        EventAugment(ops=("solarize",))(x)


def test_mixup_cutmix_targets_and_smoothing():
    y = torch.tensor([0, 3, 3, 9])
    x = torch.randn(4, 3, 8, 8)
    out, target = MixupCutmix(10, prob=0.0)(x, y)
    assert torch.equal(out, x) and target.shape == (4, 10)
    assert torch.allclose(target[0, 0], torch.tensor(0.91)) and torch.allclose(target[0, 1], torch.tensor(0.01))
    torch.manual_seed(0)
    for _ in range(20):
        out, target = MixupCutmix(10)(x, y)
        assert out.shape == x.shape and torch.allclose(target.sum(1), torch.ones(4))


def test_mixup_blends_with_reversed_batch():
    torch.manual_seed(1)
    x, y = torch.randn(4, 2, 2, 6, 6), torch.tensor([0, 1, 2, 3])
    out, target = MixupCutmix(4, mixup_alpha=1.0, cutmix_alpha=0.0, label_smoothing=0.0)(x, y)
    lam = float(target[0, 0])
    assert torch.allclose(target[0, 3], torch.tensor(1 - lam))
    assert torch.allclose(out, lam * x + (1 - lam) * x.flip(0), atol=1e-6)


def test_cutmix_box_same_for_all_frames_and_lambda_is_area():
    torch.manual_seed(2)
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1, 1).expand(4, 3, 2, 16, 16).clone()  # [B, T, C, H, W]
    y = torch.tensor([0, 1, 2, 3])
    for _ in range(10):
        out, target = MixupCutmix(4, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0)(x, y)
        pasted = out[0] == 3  # sample 0 receives a box from sample 3
        assert torch.equal(pasted, pasted[:1, :1].expand_as(pasted))  # same box in every frame and channel
        assert torch.allclose(target[0, 3], pasted[0, 0].float().mean())
        assert torch.allclose(target[0, 0] + target[0, 3], torch.tensor(1.0))


# ---------------------------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_rotate_27_degrees_counter_clockwise_at_m9_with_mean_fill(sign):
    """A bright dot 20 px right of the centre of a 65 px image ends up at 27 degrees (counter-clockwise
    for +, clockwise for -); the corners, rotated in from outside, hold the fill colour."""
    a = np.zeros((65, 65), np.uint8)
    a[31:34, 51:54] = 255  # centred on pixel (52, 32); the image centre is pixel (32, 32)
    out = apply_op(rgb(a), "Rotate", 9, sign, FILL)
    m = np.where(red(out) > 150, red(out), 0)
    ys, xs = np.mgrid[:65, :65]
    cy, cx = (m * ys).sum() / m.sum(), (m * xs).sum() / m.sum()
    angle = math.degrees(math.atan2(-(cy - 32), cx - 32))  # image y grows downwards
    assert angle == pytest.approx(27 * sign, abs=0.5)
    assert np.asarray(out)[0, 0].tolist() == list(FILL) and np.asarray(out)[64, 64].tolist() == list(FILL)


@pytest.mark.parametrize("op, axis", [("ShearX", 1), ("ShearY", 0)])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_shear_003_per_magnitude_about_the_top_left_corner(op, axis, sign):
    """ShearX at M = 9 moves row y by -0.27 y px (ShearY: column x by -0.27 x px), sign flips it."""
    a = np.zeros((64, 64), np.uint8)
    if axis == 1:
        a[:, 40] = 255
    else:
        a[40, :] = 255
    line = bright_centroids(apply_op(rgb(a), op, 9, sign, FILL), axis)
    slope, intercept = np.polyfit(np.arange(5, 60), line[5:60], 1)
    assert slope == pytest.approx(-0.27 * sign, abs=0.005)
    assert intercept == pytest.approx(40 - 0.135 * sign, abs=0.1)  # pixel centres: x + 0.5 = 40.5 - 0.27 (y + 0.5)


@pytest.mark.parametrize("op, axis", [("TranslateXRel", 1), ("TranslateYRel", 0)])
def test_translate_0045_of_the_size_per_magnitude(op, axis):
    """At M = 9 content moves 0.405 * 32 = 12.96 px towards 0 (+) or away (-); the 13 uncovered
    rows/columns hold the fill colour, bicubic keeps the line sharp."""
    a = np.zeros((32, 32), np.uint8)
    a[:, 20] = 255
    a[:, 5] = 255
    img = rgb(a if axis == 1 else a.T)
    plus, minus = (np.asarray(apply_op(img, op, 9, s, FILL)) for s in (1.0, -1.0))
    if axis == 0:
        plus, minus = plus.transpose(1, 0, 2), minus.transpose(1, 0, 2)
    row_plus, row_minus = plus[16, :, 0].astype(float), minus[16, :, 0].astype(float)
    assert row_plus.argmax() == 7 and row_minus.argmax() == 18  # 20 - 12.96 and 5 + 12.96, rounded
    assert (plus[:, 19:] == FILL).all() and (plus[:, 18] != FILL).any()  # x + 12.96 >= 32 for x >= 19.04
    assert (minus[:, :13] == FILL).all() and (minus[:, 13] != FILL).any()


def test_colour_ops_at_fixed_magnitude():
    """M = 9: Posterize keeps 1 bit, Solarize inverts from 26, SolarizeAdd adds 99 below 128,
    Brightness blends with factor 1 +- 0.81 (at least 0.1), Invert and AutoContrast as in PIL."""
    values = np.array([[0, 20, 25, 26, 100, 127, 128, 200]], np.uint8)
    img = rgb(values)
    assert red(apply_op(img, "PosterizeIncreasing", 9))[0].tolist() == [0, 0, 0, 0, 0, 0, 128, 128]
    assert red(apply_op(img, "SolarizeIncreasing", 9))[0].tolist() == [0, 20, 25, 229, 155, 128, 127, 55]
    assert red(apply_op(img, "SolarizeAdd", 9))[0].tolist() == [99, 119, 124, 125, 199, 226, 128, 200]
    assert red(apply_op(img, "PosterizeIncreasing", 0))[0].tolist() == [0, 16, 16, 16, 96, 112, 128, 192]  # 4 bits
    grey = rgb(np.full((4, 4), 100))
    assert red(apply_op(grey, "BrightnessIncreasing", 9, 1.0))[0, 0] == 181
    assert red(apply_op(grey, "BrightnessIncreasing", 9, -1.0))[0, 0] == 19
    assert red(apply_op(grey, "BrightnessIncreasing", 10, -1.0))[0, 0] == 10  # factor floored at 0.1
    assert red(apply_op(img, "Invert", 9))[0].tolist() == (255 - values[0]).tolist()
    assert red(apply_op(rgb([[50, 100, 150]]), "AutoContrast", 9))[0].tolist() == [0, 127, 255]  # stretched
    with pytest.raises(ValueError, match="unknown RandAugment op 'Identity'"):
        apply_op(img, "Identity", 9)


# ---------------------------------------------------------------------------------------------- policies


def test_policy_ops_counts_and_names():
    """The authors' CIFAR policy: one of five ops; timm's ImageNet policy: two of all fifteen."""
    assert POLICIES == {"authors-cifar": RandAugmentCIFAR, "timm-imagenet": RandAugmentImageNet}
    cifar, imagenet = RandAugmentCIFAR(), RandAugmentImageNet()
    assert (cifar.ops, cifar.num_ops) == (("Equalize", "Rotate", "ShearX", "TranslateXRel", "TranslateYRel"), 1)
    assert (len(imagenet.ops), imagenet.num_ops, imagenet.fill) == (15, 2, (124, 116, 104))
    assert set(imagenet.ops) == set(augment.RANDAUGMENT_OPS)


@pytest.mark.parametrize("policy, std, ops", [(RandAugmentCIFAR(), 0.4, 5), (RandAugmentImageNet(), 0.5, 15)])
def test_policy_probability_and_magnitude_noise(policy, std, ops):
    """Seeded, 20000 images: each drawn op applies with p = 0.5, magnitude ~ N(9, std) clipped to
    [0, 10], ops uniform, signs balanced; for the two-op policy 0, 1 or 2 ops with 1/4, 1/2, 1/4."""
    torch.manual_seed(0)
    draws = [policy.draw() for _ in range(20000)]
    counts = np.bincount([len(d) for d in draws], minlength=3) / len(draws)
    expected = [0.5, 0.5, 0.0] if policy.num_ops == 1 else [0.25, 0.5, 0.25]
    assert counts == pytest.approx(expected, abs=0.015)
    applied = [op for d in draws for op in d]
    m = np.array([magnitude for _, magnitude, _ in applied])
    assert m.mean() == pytest.approx(9.0, abs=0.02) and m.std() == pytest.approx(std, abs=0.02)
    assert m.max() <= 10.0 and m.min() >= 0.0
    per_op = np.unique([name for name, _, _ in applied], return_counts=True)[1] / len(applied)
    assert len(per_op) == ops and per_op == pytest.approx(np.full(ops, 1 / ops), abs=0.02)
    assert np.mean([sign > 0 for _, _, sign in applied]) == pytest.approx(0.5, abs=0.02)


def test_magnitude_clipped_at_10():
    torch.manual_seed(1)
    policy = RandAugmentCIFAR(magnitude=9.8, magnitude_std=0.5, prob=1.0)
    m = np.array([d[0][1] for d in (policy.draw() for _ in range(4000))])
    assert m.max() == 10.0 and np.mean(m == 10.0) == pytest.approx(0.34, abs=0.04)  # P(N(9.8, 0.5) > 10)


def test_cifar_policy_leaves_half_the_images_untouched():
    """On a synthetic image every one of the five ops changes something, so the untouched share is
    the per-op probability."""
    torch.manual_seed(2)
    image = rgb(np.tile(np.linspace(60, 160, 32).astype(np.uint8), (32, 1)))
    same = [np.array_equal(np.asarray(RandAugmentCIFAR()(image)), np.asarray(image)) for _ in range(600)]
    assert np.mean(same) == pytest.approx(0.5, abs=0.07)


def test_mean_fills_and_cifar100_statistics(tmp_path, monkeypatch):
    """Fills are the rounded mean pixels; CIFAR-100's transforms normalise with CIFAR-100's mean/std
    and fill its affine ops with CIFAR-100's mean pixel."""
    assert mean_fill(augment.NORMALIZATION["cifar10"][0]) == (125, 123, 114)
    assert mean_fill(augment.NORMALIZATION["cifar100"][0]) == (129, 124, 112)
    assert mean_fill(augment.NORMALIZATION["imagenet"][0]) == (124, 116, 104)
    from torchvision import datasets

    class FakeCIFAR100:
        def __init__(self, root, train, download, transform):
            self.transform = transform

    monkeypatch.setattr(datasets, "CIFAR100", FakeCIFAR100)
    (tmp_path / "cifar-100-python").mkdir()
    train, test, info = data.build_datasets("cifar100", str(tmp_path))
    assert info == data.DatasetInfo("cifar100", 100, 3, (32, 32), None) and not info.is_event
    image = rgb(np.full((32, 32, 3), (129, 124, 112)))
    mean, std = torch.tensor((0.5071, 0.4867, 0.4408)), torch.tensor((0.2675, 0.2565, 0.2761))
    expected = (torch.tensor((129, 124, 112)) / 255 - mean) / std
    assert torch.allclose(test.transform(image)[:, 0, 0], expected, atol=1e-6)
    rand_augment = [t for t in train.transform.transforms if isinstance(t, RandAugmentCIFAR)]
    assert len(rand_augment) == 1 and rand_augment[0].fill == (129, 124, 112)
    with pytest.raises(ValueError, match="unknown augmentation policy 'randaugment'; choose one of authors-cifar"):
        data.build_datasets("cifar100", str(tmp_path), aug_policy="randaugment")
    train, _, _ = data.build_datasets("cifar100", str(tmp_path), aug_policy="timm-imagenet")
    assert [t.fill for t in train.transform.transforms if isinstance(t, RandAugmentImageNet)] == [(129, 124, 112)]


# ---------------------------------------------------------------------------------------------- random erasing


def test_erase_batch_one_zero_box_per_erased_sample():
    """p = 1: every sample gets one zero box of 2%..1/3 of the area with aspect 0.3..3.3, the rest
    untouched, the input left alone; p = 0.25 erases about a quarter of the samples."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 3, 32, 32) + 1.0
    out = erase_batch(x, p=1.0, generator=g)
    assert torch.all(x >= 1.0)
    for sample in out:
        zero = sample == 0
        assert torch.equal(zero, zero[:1].expand_as(zero))  # same box in every channel
        rows, cols = zero[0].any(1).nonzero().squeeze(1), zero[0].any(0).nonzero().squeeze(1)
        h, w = len(rows), len(cols)
        assert int(zero[0].sum()) == h * w and rows[-1] - rows[0] + 1 == h and cols[-1] - cols[0] + 1 == w
        assert 0.02 * 1024 - 2 * 32 <= h * w <= 1024 / 3 + 2 * 32  # rounding of the sides moves the area
        assert 0.3 / 1.5 <= h / w <= 3.34 * 1.5
    erased = (erase_batch(x, p=0.25, generator=g) == 0).flatten(1).any(1).float().mean()
    assert float(erased) == pytest.approx(0.25, abs=0.07)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        erase_batch(torch.zeros(2, 2, 2, 8, 8))


def test_imagenet_random_erasing_uses_noise_per_sample():
    torch.manual_seed(3)
    img = torch.full((3, 64, 64), 5.0)
    out = RandomErasing(p=1.0)(img)
    changed = out != 5.0
    assert changed.any() and torch.equal(img, torch.full((3, 64, 64), 5.0))
    assert out[changed].std() == pytest.approx(1.0, abs=0.2)  # N(0, 1) per pixel
    assert torch.equal(RandomErasing(p=0.0)(img), img)


# ---------------------------------------------------------------------------------------------- CutMix modes


def event_batch():
    """[N=2, T=2, C=2, H=8, W=8]: sample 0 all zeros, sample 1 all ones."""
    return torch.stack([torch.zeros(2, 2, 8, 8), torch.ones(2, 2, 8, 8)])


def test_paste_box_authors_indexes_channels_and_rows():
    """Box (y0, y1, x0, x1) = (0, 2, 3, 5): "authors" changes x[:, :, 0:2, 3:5] (both polarity channels,
    rows 3 and 4, the full width, every frame); "spatial" rows 0-1 and columns 3-4 of every frame and
    channel. A box starting at y0 = 2 changes nothing in "authors" mode."""
    x = event_batch()
    authors = paste_box(x, (0, 2, 3, 5), "authors")
    expected = torch.zeros(2, 2, 8, 8)
    expected[:, :, 3:5, :] = 1
    assert torch.equal(authors[0], expected) and torch.equal(authors[1], 1 - expected)
    spatial = paste_box(x, (0, 2, 3, 5), "spatial")
    expected = torch.zeros(2, 2, 8, 8)
    expected[..., 0:2, 3:5] = 1
    assert torch.equal(spatial[0], expected)
    assert torch.equal(paste_box(x, (2, 6, 1, 7), "authors"), x)
    assert torch.equal(paste_box(x[:, 0], (2, 6, 1, 7), "authors"), paste_box(x[:, 0], (2, 6, 1, 7), "spatial"))


@pytest.mark.parametrize("mode", ["authors", "spatial"])
def test_cutmix_label_weight_is_box_area_in_both_modes(mode, monkeypatch):
    """The label weight is 1 - box area / (H W) whatever the mode: for the box (2, 6, 1, 7) on 8 x 8,
    1 - 24/64 = 0.625, even where the authors' mode leaves the input unchanged."""
    monkeypatch.setattr(augment, "cutmix_box", lambda h, w, lam: (2, 6, 1, 7))
    x, y = event_batch(), torch.tensor([0, 1])
    out, target = MixupCutmix(2, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0, event_cutmix=mode)(x, y)
    assert target.tolist() == [[0.625, 0.375], [0.375, 0.625]]
    assert torch.equal(out, x) == (mode == "authors")
    if mode == "spatial":
        assert float(out[0].mean()) == 0.375


def test_authors_cutmix_seeded_draws_match_the_box_rule():
    """Seeded draws: in "authors" mode the changed elements are exactly x[:, :, y0:y1, x0:x1] of a box
    whose area gives the label weight; with cutmix alpha 0.1 on 8 x 8 frames many draws change nothing."""
    torch.manual_seed(4)
    x, y = event_batch(), torch.tensor([0, 1])
    unchanged = 0
    for _ in range(200):
        out, target = MixupCutmix(2, mixup_alpha=0.0, cutmix_alpha=0.1, label_smoothing=0.0,
                                  event_cutmix="authors")(x, y)
        changed = out[0] != 0
        lam = float(target[0, 0])
        if not changed.any():
            unchanged += lam < 1
            continue
        assert torch.equal(changed, changed[:1].expand_as(changed))  # same in every frame
        c, rows = changed[0].any(2).any(1), changed[0].any(2).any(0)
        assert changed[0].all(2).eq(changed[0].any(2)).all()  # full width
        assert int(c.sum()) <= 2 and 1 - lam >= int(c.sum()) * int(rows.sum()) / 64 - 1e-6
    assert unchanged > 20
    with pytest.raises(ValueError, match="event_cutmix must be one of spatial, authors"):
        MixupCutmix(2, event_cutmix="time")


def test_imagenet_train_pipeline_order():
    """timm's ImageNet order: resized crop, flip, RandAugment (ImageNet's mean pixel as fill),
    ToTensor + Normalize, then per-sample random erasing with noise, p = 0.25 (before mixing); the
    CIFAR pipeline erases nothing per sample."""
    from torchvision.transforms import v2

    steps = augment.imagenet_transforms(True).transforms
    kinds = [type(t) for t in steps]
    assert kinds[:3] == [v2.RandomResizedCrop, v2.RandomHorizontalFlip, RandAugmentImageNet]
    assert steps[0].scale == (0.08, 1.0) and steps[2].fill == (124, 116, 104)
    assert kinds[-1] is RandomErasing and steps[-1] == RandomErasing(p=0.25, noise=True)
    assert v2.Normalize in kinds
    cifar = augment.cifar_transforms(True).transforms  # CIFAR erases the mixed batch instead (erase_batch)
    assert not any(isinstance(t, (RandomErasing, v2.RandomErasing)) for t in cifar)
    x = augment.imagenet_transforms(True)(rgb(np.random.default_rng(0).integers(0, 256, (40, 30, 3))))
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
