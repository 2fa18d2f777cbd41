"""Augmentation for Max-Former training: event samples, images, and whole batches.

    policy = POLICIES["authors-cifar"](fill=mean_fill((0.5071, 0.4867, 0.4408)))   # PIL image in and out
    x, soft_targets = MixupCutmix(num_classes=10, mixup_alpha=0.5, cutmix_alpha=0.5)(x, y)
    x = erase_batch(x, p=0.25)        # CIFAR: random erasing after mixing, as the authors run it

Per sample: ``EventAugment`` (event frames ``[T, C, H, W]``), the two RandAugment policies the
paper's code runs (``RandAugmentCIFAR``: the authors' own, ``RandAugmentImageNet``: timm's),
selected by name through ``POLICIES``, and ``RandomErasing`` (ImageNet, before mixing);
``cifar_transforms`` and ``imagenet_transforms`` chain them into the static-image pipelines,
normalised with ``NORMALIZATION``. Per batch: ``MixupCutmix`` and ``erase_batch`` (CIFAR, after
mixing). Values and rules: docs/reference/recipes.md (image augmentation; CutMix on event batches).
Written from those facts, not from timm's or torchvision's code.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as nnf
from PIL import Image, ImageEnhance, ImageOps
from torch import Tensor

MAX_MAGNITUDE = 10.0  # RandAugment magnitudes live in [0, 10]; 9 is the paper recipes' value
Fill = tuple[int, int, int]  # RGB fill colour, 0..255
Op = Callable[[Image.Image, float, Fill], Image.Image]  # op(image, signed magnitude, fill)


# ----------------------------------------------------------------------------------------------------
# Event samples.


@dataclass
class EventAugment:
    """The authors' event recipe on one sample ``[T, C, H, W]``: random horizontal flip, then one
    TrivialAugment-style op (``SNNAugmentWide``), identical for all T frames.

    The op is drawn uniformly from identity, shear-x, translate-x, translate-y, rotate and cut-out,
    its magnitude uniformly from [0, max] with a random sign. Maxima follow the authors' policy:
    shear 0.3 rad, rotation 30 degrees, translation 5 px of a 128-px frame (a fraction of the size
    here, so it scales to other frame sizes), cut-out of a square covering 0.1%-11% of the frame.
    Geometric ops use nearest-neighbour sampling and fill 0 so counts stay counts.
    """

    flip_p: float = 0.5
    shear: float = 0.3
    rotate_deg: float = 30.0
    translate: float = 5 / 128
    cutout_area: tuple[float, float] = (0.001, 0.11)
    ops: tuple[str, ...] = ("identity", "shear_x", "translate_x", "translate_y", "rotate", "cutout")

    def __call__(self, x: Tensor) -> Tensor:
        from torchvision.transforms.v2 import functional as tvf

        if torch.rand(()) < self.flip_p:
            x = tvf.horizontal_flip(x)
        op = self.ops[int(torch.randint(len(self.ops), ()))]
        m = float(torch.rand(())) * (1.0 if torch.rand(()) < 0.5 else -1.0)
        h, w = x.shape[-2:]
        nearest = tvf.InterpolationMode.NEAREST
        if op == "shear_x":
            return tvf.affine(x, angle=0.0, translate=[0, 0], scale=1.0, shear=[math.degrees(m * self.shear), 0.0],
                              interpolation=nearest, fill=0.0)
        if op in ("translate_x", "translate_y"):
            shift = round(m * self.translate * (w if op == "translate_x" else h))
            translate = [shift, 0] if op == "translate_x" else [0, shift]
            return tvf.affine(x, angle=0.0, translate=translate, scale=1.0, shear=[0.0, 0.0],
                              interpolation=nearest, fill=0.0)
        if op == "rotate":
            return tvf.rotate(x, m * self.rotate_deg, interpolation=nearest, fill=0.0)
        if op == "cutout":
            lo, hi = self.cutout_area
            side = min(h, w, max(1, round(math.sqrt((lo + (hi - lo) * abs(m)) * h * w))))
            i, j = int(torch.randint(h - side + 1, ())), int(torch.randint(w - side + 1, ()))
            return tvf.erase(x, i, j, side, side, torch.tensor(0.0))
        if op != "identity":
            raise ValueError(f"unknown EventAugment op {op!r}")
        return x


# ----------------------------------------------------------------------------------------------------
# RandAugment on PIL images (uint8 RGB). Magnitude M in [0, 10]; signed ops take a random sign per call.


def mean_fill(mean: tuple[float, float, float]) -> Fill:
    """The fill colour of the affine ops: the dataset's mean pixel in 0..255, rounded."""
    return tuple(min(255, round(255 * m)) for m in mean)


def _affine(img: Image.Image, coeffs: tuple[float, ...], fill: Fill) -> Image.Image:
    """PIL affine warp, bicubic: output pixel (x, y) samples the input at (a x + b y + c, d x + e y + f)."""
    return img.transform(img.size, Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BICUBIC,
                         fillcolor=fill)


def _rotate(img: Image.Image, m: float, fill: Fill) -> Image.Image:
    """Counter-clockwise by 3 M degrees (27 at M = 9) about the image centre."""
    return img.rotate(m / MAX_MAGNITUDE * 30.0, resample=Image.Resampling.BICUBIC, fillcolor=fill)


def _shear_x(img: Image.Image, m: float, fill: Fill) -> Image.Image:
    """Row y moves left by 0.03 M y pixels (shear about the top-left corner)."""
    return _affine(img, (1, m / MAX_MAGNITUDE * 0.3, 0, 0, 1, 0), fill)


def _shear_y(img: Image.Image, m: float, fill: Fill) -> Image.Image:
    return _affine(img, (1, 0, 0, m / MAX_MAGNITUDE * 0.3, 1, 0), fill)


def _translate_x(img: Image.Image, m: float, fill: Fill) -> Image.Image:
    """Content moves left by 0.045 M of the width (13 px of 32 at M = 9)."""
    return _affine(img, (1, 0, m / MAX_MAGNITUDE * 0.45 * img.size[0], 0, 1, 0), fill)


def _translate_y(img: Image.Image, m: float, fill: Fill) -> Image.Image:
    return _affine(img, (1, 0, 0, 0, 1, m / MAX_MAGNITUDE * 0.45 * img.size[1]), fill)


def _enhance(kind: type) -> Op:
    """A PIL ImageEnhance op with blend factor 1 + 0.09 M (M signed), at least 0.1."""
    def op(img: Image.Image, m: float, fill: Fill) -> Image.Image:
        return kind(img).enhance(max(0.1, 1.0 + m / MAX_MAGNITUDE * 0.9))
    return op


def _posterize(img: Image.Image, m: float, fill: Fill) -> Image.Image:
    """Keep 4 - int(0.4 M) bits per channel (1 bit at M = 9)."""
    return ImageOps.posterize(img, 4 - int(m / MAX_MAGNITUDE * 4))


def _solarize(img: Image.Image, m: float, fill: Fill) -> Image.Image:
    """Invert the values at or above 256 - int(25.6 M) (26 at M = 9)."""
    return ImageOps.solarize(img, 256 - int(m / MAX_MAGNITUDE * 256))


def _solarize_add(img: Image.Image, m: float, fill: Fill) -> Image.Image:
    """Add int(11 M) (99 at M = 9) to the values below 128, capped at 255."""
    add = int(m / MAX_MAGNITUDE * 110)
    return img.point([min(255, v + add) if v < 128 else v for v in range(256)] * len(img.getbands()))


def _unary(fn: Callable[[Image.Image], Image.Image]) -> Op:
    """An op without magnitude."""
    def op(img: Image.Image, m: float, fill: Fill) -> Image.Image:
        return fn(img)
    return op


# name: (op(img, signed magnitude, fill), whether the magnitude takes a random sign)
RANDAUGMENT_OPS: dict[str, tuple[Op, bool]] = {
    "AutoContrast": (_unary(ImageOps.autocontrast), False),
    "Equalize": (_unary(ImageOps.equalize), False),
    "Invert": (_unary(ImageOps.invert), False),
    "Rotate": (_rotate, True),
    "PosterizeIncreasing": (_posterize, False),
    "SolarizeIncreasing": (_solarize, False),
    "SolarizeAdd": (_solarize_add, False),
    "ColorIncreasing": (_enhance(ImageEnhance.Color), True),
    "ContrastIncreasing": (_enhance(ImageEnhance.Contrast), True),
    "BrightnessIncreasing": (_enhance(ImageEnhance.Brightness), True),
    "SharpnessIncreasing": (_enhance(ImageEnhance.Sharpness), True),
    "ShearX": (_shear_x, True),
    "ShearY": (_shear_y, True),
    "TranslateXRel": (_translate_x, True),
    "TranslateYRel": (_translate_y, True),
}


def apply_op(img: Image.Image, name: str, magnitude: float, sign: float = 1.0,
             fill: Fill = (128, 128, 128)) -> Image.Image:
    """One RandAugment op at a fixed magnitude (0..10) and sign (+1 or -1; ignored by unsigned ops)."""
    if name not in RANDAUGMENT_OPS:
        raise ValueError(f"unknown RandAugment op {name!r}; choose one of {', '.join(RANDAUGMENT_OPS)}")
    op, signed = RANDAUGMENT_OPS[name]
    return op(img, magnitude * sign if signed else magnitude, fill)


@dataclass(frozen=True)
class RandAugment:
    """RandAugment with per-op probability and magnitude noise (the variant timm's 'rand-m9-...' strings build).

    Per image, ``num_ops`` ops are drawn uniformly with replacement from ``ops``; each is applied with
    probability ``prob`` at magnitude ~ N(``magnitude``, ``magnitude_std``) clipped to [0, 10], with a
    random sign where the op has one. Affine ops resample bicubic and fill with ``fill``.
    """

    ops: tuple[str, ...]
    num_ops: int
    magnitude_std: float
    fill: Fill
    prob: float = 0.5
    magnitude: float = 9.0

    def draw(self) -> list[tuple[str, float, float]]:
        """The ops this call applies, as ``(name, magnitude, sign)``, from the global torch RNG."""
        chosen = torch.randint(len(self.ops), (self.num_ops,)).tolist()
        drawn = []
        for i in chosen:
            if float(torch.rand(())) >= self.prob:
                continue
            m = min(MAX_MAGNITUDE, max(0.0, self.magnitude + self.magnitude_std * float(torch.randn(()))))
            drawn.append((self.ops[i], m, 1.0 if float(torch.rand(())) < 0.5 else -1.0))
        return drawn

    def __call__(self, img: Image.Image) -> Image.Image:
        for name, m, sign in self.draw():
            img = apply_op(img, name, m, sign, self.fill)
        return img


@dataclass(frozen=True)
class RandAugmentCIFAR(RandAugment):
    """The authors' CIFAR policy ('rand-m9-n1-mstd0.4-inc1' over their five ops): one op of Equalize,
    Rotate, ShearX, TranslateXRel, TranslateYRel, p = 0.5, M ~ N(9, 0.4). Pass the dataset's mean
    pixel as ``fill`` (``mean_fill``); the default is CIFAR-10's."""

    ops: tuple[str, ...] = ("Equalize", "Rotate", "ShearX", "TranslateXRel", "TranslateYRel")
    num_ops: int = 1
    magnitude_std: float = 0.4
    fill: Fill = (125, 123, 114)  # CIFAR-10's mean pixel


@dataclass(frozen=True)
class RandAugmentImageNet(RandAugment):
    """timm's ImageNet policy 'rand-m9-mstd0.5-inc1': two of fifteen ops, p = 0.5 each, M ~ N(9, 0.5)."""

    ops: tuple[str, ...] = tuple(RANDAUGMENT_OPS)
    num_ops: int = 2
    magnitude_std: float = 0.5
    fill: Fill = (124, 116, 104)  # ImageNet's mean pixel


POLICIES: dict[str, type[RandAugment]] = {"authors-cifar": RandAugmentCIFAR, "timm-imagenet": RandAugmentImageNet}


# ----------------------------------------------------------------------------------------------------
# Random erasing: one box of area 0.02..1/3 of the image, log-uniform aspect 0.3..1/0.3, 10 tries to fit.

ERASE_AREA = (0.02, 1 / 3)  # the box's share of the image area, uniform in this range
ERASE_ASPECT = 0.3  # the box's aspect ratio is log-uniform in [ERASE_ASPECT, 1 / ERASE_ASPECT]
ERASE_TRIES = 10


def _erase_box(img: Tensor, noise: bool, generator: torch.Generator | None = None) -> None:
    """Overwrite one random box of ``img`` ``[C, H, W]`` in place: zeros, or N(0, 1) per pixel if ``noise``."""
    c, h, w = img.shape
    (low, high), aspect_low = ERASE_AREA, ERASE_ASPECT
    for _ in range(ERASE_TRIES):
        area = h * w * (low + (high - low) * float(torch.rand((), generator=generator)))
        log_aspect = math.log(aspect_low) + 2 * math.log(1 / aspect_low) * float(torch.rand((), generator=generator))
        aspect = math.exp(log_aspect)
        bh, bw = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if bh < h and bw < w:
            top = int(torch.randint(h - bh + 1, (), generator=generator))
            left = int(torch.randint(w - bw + 1, (), generator=generator))
            img[:, top:top + bh, left:left + bw] = (torch.randn(c, bh, bw, generator=generator).to(img)
                                                    if noise else 0.0)
            return


@dataclass(frozen=True)
class RandomErasing:
    """Per-sample random erasing of a normalised image ``[C, H, W]`` with probability ``p`` (ImageNet:
    p = 0.25, per-pixel normal noise, before mixing)."""

    p: float = 0.25
    noise: bool = True

    def __call__(self, img: Tensor) -> Tensor:
        if float(torch.rand(())) >= self.p:
            return img
        img = img.clone()
        _erase_box(img, self.noise)
        return img


def erase_batch(x: Tensor, p: float = 0.25, generator: torch.Generator | None = None) -> Tensor:
    """Random erasing of a normalised, already mixed batch ``[N, C, H, W]``, each sample with probability
    ``p``, filling zeros: the authors' CIFAR recipe (p = 0.25, applied after Mixup/CutMix)."""
    if x.dim() != 4:
        raise ValueError(f"erase_batch expects an image batch [N, C, H, W], got shape {tuple(x.shape)}")
    x = x.clone()
    for sample in x:
        if float(torch.rand((), generator=generator)) < p:
            _erase_box(sample, noise=False, generator=generator)
    return x


# ----------------------------------------------------------------------------------------------------
# Static-image pipelines: the per-sample transforms of CIFAR and ImageNet, normalisation last.

# (mean, std) per channel, of the training images in [0, 1] (docs/reference/recipes.md, hyper-parameters).
NORMALIZATION: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
DEFAULT_POLICY = {"cifar10": "authors-cifar", "cifar100": "authors-cifar", "imagenet": "timm-imagenet"}


def check_policy(policy: str | None) -> None:
    """ValueError unless ``policy`` is None or one of ``POLICIES``."""
    if policy is not None and policy not in POLICIES:
        raise ValueError(f"unknown augmentation policy {policy!r}; choose one of {', '.join(POLICIES)}")


def _normalise(dataset: str) -> list[Callable]:
    from torchvision.transforms import v2

    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(*NORMALIZATION[dataset])]


def cifar_transforms(train: bool, augment: bool = True, dataset: str = "cifar10",
                     policy: str | None = None) -> Callable[[object], Tensor]:
    """The authors' CIFAR-10/100 pipeline (docs/reference/recipes.md, image augmentation).

    Train: horizontal flip, the RandAugment ``policy`` (default "authors-cifar") filling with the
    dataset's mean pixel, ToTensor, Normalize with the dataset's own mean/std. The authors' resized
    crop has scale (1, 1) and ratio (1, 1), so it leaves the image as it is and is left out. Random
    erasing is not here: the authors apply it to the normalised batch after Mixup/CutMix
    (``augment.erase_batch``). Test: ToTensor + Normalize.
    """
    from torchvision.transforms import v2

    check_policy(policy)
    if not (train and augment):
        return v2.Compose(_normalise(dataset))
    rand_augment = POLICIES[policy or DEFAULT_POLICY[dataset]](fill=mean_fill(NORMALIZATION[dataset][0]))
    return v2.Compose([v2.RandomHorizontalFlip(), rand_augment] + _normalise(dataset))


def imagenet_transforms(train: bool, augment: bool = True, size: int = 224,
                        policy: str | None = None, erasing: float = 0.25) -> Callable[[object], Tensor]:
    """The authors' ImageNet pipeline, timm's ``create_transform`` with their arguments (docs/reference/recipes.md).

    Train: RandomResizedCrop(224, scale 0.08-1, ratio 3/4-4/3, bicubic), horizontal flip, the
    RandAugment ``policy`` (default "timm-imagenet") filling with ImageNet's mean pixel, ToTensor,
    Normalize (ImageNet mean/std), random erasing with probability ``erasing`` (the authors' 0.25; 0: off)
    with per-pixel normal noise, before mixing.
    Val: Resize(256, bicubic), CenterCrop(224), ToTensor, Normalize.
    """
    from torchvision.transforms import v2

    check_policy(policy)
    bicubic = v2.InterpolationMode.BICUBIC
    if not (train and augment):
        return v2.Compose([v2.Resize(round(size * 256 / 224), interpolation=bicubic), v2.CenterCrop(size)]
                          + _normalise("imagenet"))
    rand_augment = POLICIES[policy or DEFAULT_POLICY["imagenet"]](fill=mean_fill(NORMALIZATION["imagenet"][0]))
    return v2.Compose([v2.RandomResizedCrop(size, interpolation=bicubic), v2.RandomHorizontalFlip(), rand_augment]
                      + _normalise("imagenet") + [RandomErasing(p=erasing, noise=True)])


# ----------------------------------------------------------------------------------------------------
# Batch-level Mixup / CutMix.


EVENT_CUTMIX = ("spatial", "authors")


def cutmix_box(h: int, w: int, lam: float) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)``: a box of sides ``sqrt(1 - lam)`` of ``h`` and ``w``, centred at a uniformly
    drawn pixel and clipped to the image (so it may cover less than ``1 - lam``)."""
    ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
    return max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)


def paste_box(x: Tensor, box: tuple[int, int, int, int], event_cutmix: str = "spatial") -> Tensor:
    """``x`` with the box of the reversed batch pasted in: on the last two dimensions ("spatial"), or on
    dimensions 2 and 3 ("authors", which differs from "spatial" only for ``[B, T, C, H, W]`` batches)."""
    y0, y1, x0, x1 = box
    x = x.clone()
    if event_cutmix == "authors":
        x[:, :, y0:y1, x0:x1] = x.flip(0)[:, :, y0:y1, x0:x1]
    else:
        x[..., y0:y1, x0:x1] = x.flip(0)[..., y0:y1, x0:x1]
    return x


def smooth_one_hot(y: Tensor, num_classes: int, smoothing: float) -> Tensor:
    """Label smoothing: ``1 - s + s/K`` on the class and ``s/K`` elsewhere, ``[B] -> [B, K]``."""
    return nnf.one_hot(y, num_classes).float() * (1.0 - smoothing) + smoothing / num_classes


class MixupCutmix:
    """Batch-level Mixup (Zhang et al. 2018) / CutMix (Yun et al. 2019) with label smoothing.

    With probability ``prob`` a batch is mixed with its reverse (sample b with sample B-1-b) using
    ``lam ~ Beta(alpha, alpha)``: CutMix (with probability ``switch_prob`` when both alphas are > 0)
    pastes a box of area ~(1-lam) and then sets lam to the exact box area kept; Mixup blends
    ``lam * x + (1-lam) * x_rev``. Targets are ``lam * smooth(y) + (1-lam) * smooth(y_rev)`` with
    ``smooth`` putting ``1 - s + s/K`` on the class and ``s/K`` elsewhere.

    The box ``(y0, y1, x0, x1)`` is drawn from the last two dimensions (H, W). On image batches
    ``[B, C, H, W]`` both modes paste it there. On event batches ``[B, T, C, H, W]``:

    - ``event_cutmix="spatial"`` pastes it on H and W of every frame and channel: the sound choice
      for new work.
    - ``event_cutmix="authors"`` pastes ``x[:, :, y0:y1, x0:x1]``, as the authors' code does (timm's
      image CutMix on 5-D tensors): the rows ``y0:y1`` select polarity channels (none when y0 >= 2,
      so the input is unchanged while the labels are mixed) and ``x0:x1`` a band of rows of the
      height, across the full width. The label weight is still the box area of H x W. Use it to
      reproduce the paper's event numbers (docs/reference/recipes.md, CutMix on event batches).

    The paper recipes' values (mixup / cutmix alpha, prob, switch prob): docs/reference/recipes.md,
    hyper-parameters per setting.
    """

    def __init__(self, num_classes: int, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, prob: float = 1.0,
                 switch_prob: float = 0.5, label_smoothing: float = 0.1, event_cutmix: str = "spatial") -> None:
        if event_cutmix not in EVENT_CUTMIX:
            raise ValueError(f"event_cutmix must be one of {', '.join(EVENT_CUTMIX)}, got {event_cutmix!r}")
        self.num_classes, self.mixup_alpha, self.cutmix_alpha = num_classes, mixup_alpha, cutmix_alpha
        self.prob, self.switch_prob, self.label_smoothing = prob, switch_prob, label_smoothing
        self.event_cutmix = event_cutmix

    def smooth(self, y: Tensor) -> Tensor:
        return smooth_one_hot(y, self.num_classes, self.label_smoothing)

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        lam = 1.0
        if (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and torch.rand(()) < self.prob:
            cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha <= 0 or torch.rand(()) < self.switch_prob)
            alpha = self.cutmix_alpha if cutmix else self.mixup_alpha
            lam = float(torch.distributions.Beta(alpha, alpha).sample())
            if cutmix:
                h, w = x.shape[-2:]
                y0, y1, x0, x1 = cutmix_box(h, w, lam)
                x = paste_box(x, (y0, y1, x0, x1), self.event_cutmix)
                lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
            else:
                x = x * lam + x.flip(0) * (1.0 - lam)
        target = self.smooth(y)
        return x, target * lam + target.flip(0) * (1.0 - lam)
