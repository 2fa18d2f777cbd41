"""Training recipes: learning-rate schedules, steps per epoch, and the resolved-recipe record.

    from recipe import config_steps_per_epoch, lr_at, resolve_recipe
    steps = config_steps_per_epoch(cfg, world_size)  # when training: the real loader's length instead
    lr = lr_at(step, cfg, steps, world_size)         # the lr of global training iteration `step`
    record = resolve_recipe(cfg, steps, world_size)  # JSON-able; `train.py --print-recipe` prints it

Three schedule kinds, chosen by ``cfg.schedule`` (facts: docs/reference/recipes.md, "Schedules"):

- ``epoch-cosine``: timm's ``CosineLRScheduler`` stepped once per epoch, as the authors ran it for
  CIFAR and event data. The lr is constant within an epoch; the cosine is counted from epoch 0 over
  ``E = epochs - cooldown_epochs`` epochs; a linear warm-up from ``warmup_lr`` overwrites its first
  ``warmup_epochs`` epochs (so the peak itself is never used); the cool-down epochs run at ``min_lr``.
- ``iter-cosine``: the MAE-style rule of the authors' ImageNet script, evaluated before every
  iteration at the fractional epoch ``f = step / steps_per_epoch``: linear warm-up from ``warmup_lr``
  (0 in the paper configs) over ``warmup_epochs``, then a cosine from the peak to ``min_lr`` that ends
  at epoch E.
- ``step-cosine``: this project's earlier per-step schedule (linear warm-up over
  ``round(warmup_epochs x steps_per_epoch)`` steps, cosine from the peak to ``min_lr`` ending at the
  last step of epoch E, then ``min_lr``).

The peak lr is ``cfg.lr``, or ``cfg.lr_base x batch_size x world_size / 256`` when ``lr_base`` is set
(the authors' ImageNet rule; they ran 8 processes x 64 = 512 images per step).

This module only reads attributes of ``cfg`` (train.py's config; see ``RecipeConfig``), so
``--print-recipe`` needs no data and no model; the facts it records that the code also uses (the
normalisation, the erasing box, which datasets are event data) come from augment.py and data.py.
"""
from __future__ import annotations

import math
from typing import Protocol

from augment import ERASE_AREA, ERASE_ASPECT, NORMALIZATION
from data import BAND_DATASETS, EVENT_DATASETS, bands_config

SCHEDULES: tuple[str, ...] = ("epoch-cosine", "iter-cosine", "step-cosine")

# Training-split sizes, so that steps per epoch are known without the data on disk
# (docs/reference/recipes.md, "Steps per epoch").
TRAIN_SIZES: dict[str, int] = {
    "cifar10": 50000,
    "cifar100": 50000,
    "imagenet": 1281167,
    "dvsgesture": 1176,  # IBM's trials_to_train.txt, as spikingjelly cuts it
    "cifar10dvs": 9000,  # first ceil(0.9 x 1000) files of each of the 10 classes
    "digits-dvs": 1437,  # scikit-learn's 1797 digits, 80/20 stratified split
    **{name: bands_config(name).classes * bands_config(name).train_per_class for name in BAND_DATASETS},
}

# What the two named RandAugment policies do (docs/reference/recipes.md, "Image augmentation");
# augment.py implements them under the same names.
POLICY_PARAMETERS: dict[str, dict] = {
    "authors-cifar": {
        "timm_name": "rand-m9-n1-mstd0.4-inc1",
        "before": ["horizontal flip p=0.5"],
        "ops": ["Equalize", "Rotate", "ShearX", "TranslateXRel", "TranslateYRel"],
        "ops_per_image": 1,
        "op_prob": 0.5,
        "magnitude": {"mean": 9, "std": 0.4, "clip": [0, 10]},
        "at_magnitude_M": {"rotate_deg": "3 M", "shear": "0.03 M", "translate_fraction": "0.045 M"},
        "fill": {"cifar10": [125, 123, 114], "cifar100": [129, 124, 112]},
        "resample": "bicubic",
    },
    "timm-imagenet": {
        "timm_name": "rand-m9-mstd0.5-inc1",
        "before": ["RandomResizedCrop(224, scale=(0.08, 1), ratio=(3/4, 4/3), bicubic)", "horizontal flip p=0.5"],
        "ops": ["AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
                "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
                "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"],
        "ops_per_image": 2,
        "op_prob": 0.5,
        "magnitude": {"mean": 9, "std": 0.5, "clip": [0, 10]},
        "at_magnitude_M": {"rotate_deg": "3 M", "shear": "0.03 M", "translate_fraction": "0.045 M",
                           "enhance_factor": "1 +- 0.09 M, at least 0.1", "posterize_bits": "4 - int(0.4 M)",
                           "solarize_threshold": "256 - int(25.6 M)", "solarize_add": "int(11 M) below 128"},
        "fill": {"imagenet": [124, 116, 104]},
        "resample": "bicubic",
    },
}

# The authors' ImageNet runs: 8 processes x 64 images per step (docs/reference/recipes.md, "Hyper-parameters").
AUTHORS_IMAGENET_PROCESSES, AUTHORS_IMAGENET_BATCH = 8, 64


class RecipeConfig(Protocol):
    """The attributes of train.py's config that this module reads (train.py's flag dest names)."""

    model: str
    dataset: str
    T: int | None
    augment: bool
    lr: float
    lr_base: float | None
    batch_size: int
    epochs: int
    warmup_epochs: float
    warmup_lr: float
    min_lr: float
    cooldown_epochs: int
    weight_decay: float
    clip_grad: float | None
    smoothing: float
    mixup: float
    cutmix: float
    mixup_prob: float
    mixup_switch_prob: float
    mixup_off_epoch: int
    precision: str
    eval_precision: str
    seed: int
    schedule: str
    aug_policy: str | None
    event_cutmix: str
    random_erasing: float
    deterministic: bool
    limit_train: int | None
    steps_per_epoch: int | None


# ----------------------------------------------------------------------------------------------
# The three schedules as functions of plain numbers.

def epoch_cosine_lr(epoch: int, peak: float, warmup_epochs: float, warmup_lr: float, min_lr: float,
                    cosine_epochs: int) -> float:
    """timm ``CosineLRScheduler`` (t_in_epochs, warmup_prefix False, one cycle) at 0-based epoch ``epoch``.

    docs/reference/recipes.md, "Schedules": warm-up ``w0 + e (L - w0) / W`` for ``e < W``, then
    ``m + (L - m)(1 + cos(pi e / E)) / 2`` for ``e < E``, then ``m``.
    """
    if epoch < warmup_epochs:
        return warmup_lr + epoch * (peak - warmup_lr) / warmup_epochs
    if epoch < cosine_epochs:
        return min_lr + 0.5 * (peak - min_lr) * (1 + math.cos(math.pi * epoch / cosine_epochs))
    return min_lr


def iter_cosine_lr(fractional_epoch: float, peak: float, warmup_epochs: float, warmup_lr: float, min_lr: float,
                   cosine_epochs: int) -> float:
    """The MAE-style per-iteration rule of the authors' ImageNet script at ``f = epoch + it / iters``.

    docs/reference/recipes.md, "Schedules": ``L f / W`` for ``f < W`` (warm-up from ``warmup_lr`` = 0),
    then ``m + (L - m)(1 + cos(pi (f - W) / (E - W))) / 2``; ``m`` from epoch E on (a cool-down, which
    the authors' ImageNet runs do not have).
    """
    if fractional_epoch < warmup_epochs:
        return warmup_lr + (peak - warmup_lr) * fractional_epoch / warmup_epochs
    if fractional_epoch >= cosine_epochs:
        return min_lr
    progress = (fractional_epoch - warmup_epochs) / (cosine_epochs - warmup_epochs)
    return min_lr + (peak - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def step_cosine_lr(step: int, peak: float, warmup_epochs: float, warmup_lr: float, min_lr: float,
                   cosine_epochs: int, steps_per_epoch: int) -> float:
    """This project's per-step schedule: linear warm-up, cosine from the peak to ``min_lr``, then ``min_lr``."""
    warmup = round(warmup_epochs * steps_per_epoch)
    decay_end = max(warmup + 1, cosine_epochs * steps_per_epoch)
    if step < warmup:
        return warmup_lr + (peak - warmup_lr) * step / warmup
    if step >= decay_end:
        return min_lr
    progress = (step - warmup) / (decay_end - warmup)
    return min_lr + 0.5 * (peak - min_lr) * (1 + math.cos(math.pi * progress))


# ----------------------------------------------------------------------------------------------
# The schedule of a config.

def peak_lr(cfg: RecipeConfig, world_size: int = 1) -> float:
    """``cfg.lr``, or ``cfg.lr_base x global batch / 256`` when ``lr_base`` is set (global batch =
    ``batch_size x world_size``)."""
    if cfg.lr_base is not None:
        return cfg.lr_base * cfg.batch_size * world_size / 256
    return cfg.lr


def cosine_epochs(cfg: RecipeConfig) -> int:
    """E: the epochs the cosine spans, ``epochs - cooldown_epochs`` (the authors' yaml 'epochs')."""
    return cfg.epochs - cfg.cooldown_epochs


def check_schedule(cfg: RecipeConfig, steps_per_epoch: int) -> None:
    """Raise ValueError (one line) for a schedule these functions cannot evaluate."""
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {cfg.schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if steps_per_epoch < 1:
        raise ValueError(f"steps per epoch must be at least 1, got {steps_per_epoch}")
    if not 0 <= cfg.cooldown_epochs <= cfg.epochs:
        raise ValueError(f"--cooldown-epochs {cfg.cooldown_epochs} must be between 0 and --epochs {cfg.epochs}")
    if cfg.warmup_epochs < 0:
        raise ValueError(f"--warmup-epochs must not be negative, got {cfg.warmup_epochs}")


def lr_at(step: int, cfg: RecipeConfig, steps_per_epoch: int, world_size: int = 1) -> float:
    """The learning rate of global training iteration ``step`` (0-based, counted over all epochs)."""
    check_schedule(cfg, steps_per_epoch)
    shape = (peak_lr(cfg, world_size), cfg.warmup_epochs, cfg.warmup_lr, cfg.min_lr, cosine_epochs(cfg))
    if cfg.schedule == "epoch-cosine":
        return epoch_cosine_lr(step // steps_per_epoch, *shape)
    if cfg.schedule == "iter-cosine":
        return iter_cosine_lr(step / steps_per_epoch, *shape)
    return step_cosine_lr(step, *shape, steps_per_epoch)


def lr_per_epoch(cfg: RecipeConfig, steps_per_epoch: int, world_size: int = 1) -> list[float]:
    """The lr of the first training iteration of every epoch."""
    return [lr_at(epoch * steps_per_epoch, cfg, steps_per_epoch, world_size) for epoch in range(cfg.epochs)]


def steps_per_epoch_for(dataset: str, batch_size: int, world_size: int = 1, drop_last: bool = True,
                        limit: int | None = None) -> int:
    """Optimiser steps per epoch per process, counted as train.py's loader counts them.

    train.py shards with ``DistributedSampler(drop_last=True)`` (``floor(N / world)`` samples per process)
    and batches with ``drop_last=True``; with ``drop_last=False`` both round up instead. ``limit`` caps N
    (``--limit-train``). Raises ValueError for a dataset of unknown size or a batch larger than a shard.
    """
    if dataset not in TRAIN_SIZES:
        raise ValueError(f"the training-split size of {dataset!r} is not known here; pass --steps-per-epoch N")
    n = TRAIN_SIZES[dataset] if limit is None else min(limit, TRAIN_SIZES[dataset])
    if drop_last:
        steps = n // world_size // batch_size
    else:
        steps = math.ceil(math.ceil(n / world_size) / batch_size)
    if steps < 1:
        raise ValueError(f"{dataset} has {n} training samples for {world_size} process(es), fewer than one "
                         f"batch of {batch_size}; lower --batch-size")
    return steps


def config_steps_per_epoch(cfg: RecipeConfig, world_size: int = 1) -> int:
    """Steps per epoch for ``--print-recipe``: ``cfg.steps_per_epoch`` if set, else counted from the
    dataset's known training-split size (capped by ``cfg.limit_train``) as train.py's loader counts them."""
    if cfg.steps_per_epoch is not None:
        if cfg.steps_per_epoch < 1:
            raise ValueError(f"--steps-per-epoch must be at least 1, got {cfg.steps_per_epoch}")
        return cfg.steps_per_epoch
    return steps_per_epoch_for(cfg.dataset, cfg.batch_size, world_size, limit=cfg.limit_train)


# ----------------------------------------------------------------------------------------------
# The resolved recipe.

def _lr_record(cfg: RecipeConfig, world_size: int) -> dict:
    record = {"peak": peak_lr(cfg, world_size), "lr_base": cfg.lr_base,
              "rule": "lr" if cfg.lr_base is None else "lr_base x batch_size x world_size / 256"}
    if cfg.lr_base is not None and cfg.dataset == "imagenet":
        authors = AUTHORS_IMAGENET_PROCESSES * AUTHORS_IMAGENET_BATCH
        record["authors_global_batch"] = f"{AUTHORS_IMAGENET_PROCESSES} x {AUTHORS_IMAGENET_BATCH} = {authors}"
        record["peak_at_authors_batch"] = cfg.lr_base * authors / 256
    return record


def _schedule_record(cfg: RecipeConfig, steps_per_epoch: int) -> dict:
    described = {
        "epoch-cosine": "timm CosineLRScheduler stepped per epoch: lr constant within an epoch, cosine from "
                        "epoch 0 over cosine_epochs, linear warm-up overwriting its start, cool-down at min lr",
        "iter-cosine": "MAE per-iteration rule: linear warm-up, then cosine from the end of warm-up to "
                       "cosine_epochs, evaluated at the fractional epoch before every iteration",
        "step-cosine": "per step: linear warm-up over round(warmup_epochs x steps), cosine to min lr at the "
                       "end of cosine_epochs, then min lr",
    }
    return {"kind": cfg.schedule, "description": described[cfg.schedule], "steps_per_epoch": steps_per_epoch,
            "epochs": cfg.epochs, "cosine_epochs": cosine_epochs(cfg), "cooldown_epochs": cfg.cooldown_epochs,
            "warmup_epochs": cfg.warmup_epochs, "warmup_lr": cfg.warmup_lr, "min_lr": cfg.min_lr}


def _mixing_record(cfg: RecipeConfig) -> dict:
    on = cfg.mixup > 0 or cfg.cutmix > 0
    record = {"enabled": on, "mixup_alpha": cfg.mixup, "cutmix_alpha": cfg.cutmix, "prob": cfg.mixup_prob,
              "switch_prob": cfg.mixup_switch_prob, "mode": "batch",
              "off_from_epoch": cfg.mixup_off_epoch if on and cfg.mixup_off_epoch > 0 else None}
    if cfg.dataset in EVENT_DATASETS:
        record["event_cutmix"] = cfg.event_cutmix
    return record


def _erasing_record(cfg: RecipeConfig) -> dict | None:
    if cfg.random_erasing <= 0 or not cfg.augment:
        return None
    box = {"p": cfg.random_erasing, "count": 1, "area": list(ERASE_AREA),
           "aspect_log_uniform": [ERASE_ASPECT, 1 / ERASE_ASPECT]}
    if cfg.dataset == "imagenet":
        return {**box, "mode": "pixel (normal noise)", "where": "per sample in the transform, before mixing"}
    return {**box, "mode": "const 0", "where": "per sample on the normalised batch, after mixup/cutmix"}


def _augmentation_record(cfg: RecipeConfig) -> dict:
    if not cfg.augment:
        return {"train": False}
    if cfg.dataset in EVENT_DATASETS:
        return {"train": True, "per_sample": "horizontal flip p=0.5, then one SNNAugmentWide op, same for every "
                                             "frame", "random_erasing": _erasing_record(cfg)}
    policy = cfg.aug_policy
    parameters = POLICY_PARAMETERS.get(policy) if policy is not None else None
    if parameters is not None:
        parameters = {**parameters, "fill": parameters["fill"].get(cfg.dataset, "dataset mean pixel")}
    return {"train": True, "policy": policy, "policy_parameters": parameters,
            "random_erasing": _erasing_record(cfg)}


def _precision_record(cfg: RecipeConfig) -> dict:
    train = {"auto": "bf16 where supported, else fp16", "bf16": "bf16 autocast", "fp16": "fp16 autocast",
             "fp32": "fp32"}.get(cfg.precision, cfg.precision)
    evaluation = train if cfg.eval_precision == "same" else cfg.eval_precision
    return {"train": cfg.precision, "train_means": train, "eval": cfg.eval_precision, "eval_means": evaluation,
            "grad_scaler": {"fp16": "dynamic", "auto": "dynamic when fp16 is picked"}.get(cfg.precision),
            "note": "autocast on CUDA only; the dtype changes which spiking neurons cross their threshold"}


def resolve_recipe(cfg: RecipeConfig, steps_per_epoch: int, world_size: int = 1) -> dict:
    """Every resolved hyper-parameter of a run, as a JSON-able dict (the keys of docs/reference/recipes.md's
    table) plus ``lr_per_epoch``: the lr of the first iteration of every epoch."""
    check_schedule(cfg, steps_per_epoch)
    normalisation = NORMALIZATION.get(cfg.dataset)
    return {
        "model": cfg.model,
        "dataset": cfg.dataset,
        "T": cfg.T,
        "optimizer": {"name": "AdamW", "betas": [0.9, 0.999], "eps": 1e-8},
        "lr": _lr_record(cfg, world_size),
        "weight_decay": cfg.weight_decay,
        "weight_decay_excluded": "parameters with ndim <= 1 (biases, norm weights)",
        "batch_size": {"per_process": cfg.batch_size, "world_size": world_size,
                       "global": cfg.batch_size * world_size},
        "schedule": _schedule_record(cfg, steps_per_epoch),
        "label_smoothing": cfg.smoothing,
        "mixing": _mixing_record(cfg),
        "augmentation": _augmentation_record(cfg),
        "normalisation": None if normalisation is None else {"mean": list(normalisation[0]),
                                                             "std": list(normalisation[1])},
        "precision": _precision_record(cfg),
        "determinism": {"deterministic": cfg.deterministic, "cudnn_deterministic": cfg.deterministic,
                        "cudnn_benchmark_off": cfg.deterministic},
        "seed": {"seed": cfg.seed, "per_rank": "seed + rank"},
        "gradient_clipping": cfg.clip_grad,
        "lr_per_epoch": lr_per_epoch(cfg, steps_per_epoch, world_size),
    }
