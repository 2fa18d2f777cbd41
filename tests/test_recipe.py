"""recipe.py and configs/*.yaml against the authors' recipes (docs/reference/recipes.md).

The paper configs are read by train.py's own flag parser into its ``Config``, so these tests need
neither data nor a model.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import yaml

import recipe
from train import Config, parse_args

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
PAPER_CONFIGS = sorted(p.name for p in CONFIGS.glob("*.yaml"))


def config(**changes: object) -> Config:
    """train.py's config with its defaults, and ``changes``."""
    return dataclasses.replace(Config(), **changes)


def yaml_values(name: str) -> dict:
    return yaml.safe_load((CONFIGS / name).read_text())


def config_from_yaml(name: str) -> Config:
    """train.py's config from a config file, read as train.py reads it (no data, no model)."""
    return parse_args(["--config", str(CONFIGS / name)])


def steps_of(cfg: Config, world_size: int = 1) -> int:
    return recipe.steps_per_epoch_for(cfg.dataset, cfg.batch_size, world_size)


def within_digits(actual: float, quoted: str) -> bool:
    """``actual`` agrees with ``quoted`` ('4.868e-3', '0.2880') to within one unit of its last digit (the
    reference table rounds the Gesture epoch-10 value 4.94548e-3 to 4.946e-3)."""
    mantissa, _, exponent = quoted.partition("e")
    decimals = len(mantissa.partition(".")[2])
    unit = 10.0 ** (-decimals + (int(exponent) if exponent else 0))
    return abs(actual - float(quoted)) <= unit * (1 + 1e-9)


def timm_epoch_cosine(e: int, L: float, W: int, w0: float, m: float, E: int) -> float:
    """The formula of docs/reference/recipes.md, "Schedules", written out independently."""
    if e < W:
        return w0 + e * (L - w0) / W
    if e < E:
        return m + (L - m) * (1 + math.cos(math.pi * e / E)) / 2
    return m


# ----------------------------------------------------------------------------------------------
# The per-epoch cosine of the CIFAR and event configs.

# docs/reference/recipes.md, "Schedules": lr per epoch, by 0-based epoch ("last" = E - 1, "cool" = cool-down).
EPOCH_TABLE = {
    "cifar10.yaml": {0: "8.0e-5", 10: "7.9e-4", 20: "1.4908e-3", 50: "1.443e-3", 75: "1.374e-3", 200: "7.55e-4",
                     "last": "1.0023e-5", "cool": "1e-5", "sum": "0.2880"},
    "cifar100.yaml": {0: "1.0e-5", 10: "7.55e-4", 20: "1.4908e-3", 50: "1.443e-3", 75: "1.374e-3",
                      200: "7.55e-4", "last": "1.0023e-5", "cool": "1e-5", "sum": "0.2873"},
    "cifar10dvs.yaml": {0: "1.0e-5", 10: "4.868e-3", 20: "4.4844e-3", 50: "2.342e-3", 75: "5.76e-4",
                        "last": "1.1336e-5", "cool": "1e-5", "sum": "0.2160"},
    "dvsgesture.yaml": {0: "1.0e-5", 10: "4.946e-3", 20: "4.7843e-3", 50: "3.753e-3", 75: "2.505e-3",
                        "last": "1.0547e-5", "cool": "1e-5", "sum": "0.3511"},
}
LAST_COSINE_EPOCH = {"cifar10.yaml": 399, "cifar100.yaml": 399, "cifar10dvs.yaml": 95, "dvsgesture.yaml": 149}


@pytest.mark.parametrize("name", sorted(EPOCH_TABLE))
def test_epoch_cosine_matches_the_authors_table(name: str) -> None:
    cfg = config_from_yaml(name)
    lrs = recipe.lr_per_epoch(cfg, steps_of(cfg))
    table = EPOCH_TABLE[name]
    assert len(lrs) == cfg.epochs
    assert recipe.cosine_epochs(cfg) - 1 == LAST_COSINE_EPOCH[name]
    for epoch, quoted in table.items():
        if isinstance(epoch, int):
            assert within_digits(lrs[epoch], quoted), (name, epoch, lrs[epoch], quoted)
    assert within_digits(lrs[LAST_COSINE_EPOCH[name]], table["last"])
    assert all(lr == float(table["cool"]) for lr in lrs[LAST_COSINE_EPOCH[name] + 1:])
    assert len(lrs) - LAST_COSINE_EPOCH[name] - 1 == cfg.cooldown_epochs == 10
    assert within_digits(sum(lrs), table["sum"]), (name, sum(lrs))
    assert max(lrs) < cfg.lr  # the peak itself is never used


@pytest.mark.parametrize("name", sorted(EPOCH_TABLE) + ["max_resnet18_cifar10.yaml", "max_resnet18_cifar100.yaml"])
def test_epoch_cosine_is_the_formula_and_constant_within_each_epoch(name: str) -> None:
    cfg = config_from_yaml(name)
    steps = steps_of(cfg)
    E = cfg.epochs - cfg.cooldown_epochs
    for epoch in range(cfg.epochs):
        expected = timm_epoch_cosine(epoch, cfg.lr, cfg.warmup_epochs, cfg.warmup_lr, cfg.min_lr, E)
        for step in (epoch * steps, epoch * steps + steps // 2, (epoch + 1) * steps - 1):
            assert recipe.lr_at(step, cfg, steps) == pytest.approx(expected, rel=1e-14, abs=0), (epoch, step)


# ----------------------------------------------------------------------------------------------
# The per-iteration rule of the ImageNet configs.

IMAGENET = {  # name: (blr, min lr, mixup alpha, T), docs/reference/recipes.md, "Hyper-parameters"
    "imagenet_10_384_t4.yaml": (1.35e-3, 2.5e-6, 0.25, 4),
    "imagenet_10_512_t1.yaml": (1.2e-3, 1e-6, 0.4, 1),
    "imagenet_10_512_t4.yaml": (1.35e-3, 1e-6, 0.4, 4),
    "imagenet_10_768_t1.yaml": (1.2e-3, 1e-5, 0.8, 1),
    "imagenet_10_768_t4.yaml": (1.35e-3, 1e-5, 0.8, 4),
}


@pytest.mark.parametrize("name", sorted(IMAGENET))
def test_imagenet_per_iteration_rule(name: str) -> None:
    cfg = config_from_yaml(name)
    blr, m, _, _ = IMAGENET[name]
    steps = steps_of(cfg, world_size=8)
    assert steps == 1281167 // 8 // 64 == 2502
    L = blr * 512 / 256
    assert recipe.peak_lr(cfg, world_size=8) == pytest.approx(L, rel=1e-15)

    def lr(fractional_epoch: float) -> float:
        return recipe.lr_at(round(fractional_epoch * steps), cfg, steps, world_size=8)

    assert lr(0) == 0.0
    assert lr(0.5) == pytest.approx(L * 0.5 / 5, rel=1e-12)
    assert lr(2.5) == pytest.approx(L / 2, rel=1e-12)
    assert lr(5) == pytest.approx(L, rel=1e-12)
    assert lr(102.5) == pytest.approx(m + (L - m) / 2, rel=1e-12)
    for f in (5.5, 37.5, 150.0, 199.5):  # whole steps at 2502 steps per epoch
        assert lr(f) == pytest.approx(m + (L - m) * (1 + math.cos(math.pi * (f - 5) / 195)) / 2, rel=1e-12)
    # The lr changes within an epoch (unlike the per-epoch cosine).
    assert recipe.lr_at(10 * steps + 1, cfg, steps, 8) < recipe.lr_at(10 * steps, cfg, steps, 8)
    per_epoch = recipe.lr_per_epoch(cfg, steps, world_size=8)
    assert len(per_epoch) == 200 and per_epoch[0] == 0.0 and per_epoch[5] == pytest.approx(L, rel=1e-12)
    assert per_epoch[199] == pytest.approx(m + (L - m) * (1 + math.cos(math.pi * 194 / 195)) / 2, rel=1e-12)


def test_imagenet_peak_scales_with_the_global_batch() -> None:
    cfg = config_from_yaml("imagenet_10_768_t4.yaml")
    assert recipe.peak_lr(cfg) == pytest.approx(1.35e-3 * 64 / 256, rel=1e-15)
    assert recipe.peak_lr(cfg, world_size=8) == pytest.approx(2.7e-3, rel=1e-15)
    lr = recipe.resolve_recipe(cfg, steps_of(cfg), world_size=1)["lr"]
    assert lr["authors_global_batch"] == "8 x 64 = 512" and lr["peak_at_authors_batch"] == pytest.approx(2.7e-3)


# ----------------------------------------------------------------------------------------------
# The per-step schedule equals the one train.py ran before recipe.py (values computed with that
# train.lr_at and written down as literals).

STEP_COSINE_OFFLINE = [  # peak 5e-3, 10 epochs with 2 of cool-down, warm-up 0.3 epochs from 1e-6, 45 steps/epoch
    (0, 1e-06), (1, 0.00035807142857142857), (7, 0.0025004999999999997), (13, 0.004642928571428572),
    (14, 0.005), (100, 0.004277222598729374), (223, 0.001703902413394587), (224, 0.001682481249676759),
    (300, 0.0003711791766110653), (449, 1e-05)]
STEP_COSINE_IMAGENET = [  # lr-base 1.35e-3 at 8 x 64, 200 epochs, warm-up 5 from 0, min lr 2.5e-6, 2502 steps/epoch
    (0, 0.0), (1000, 0.0002158273381294964), (12510, 0.0027), (12511, 0.0026999999999720386),
    (250000, 0.0014072941908992009), (500399, 2.5000000279613485e-06)]


def test_step_cosine_equals_the_earlier_train_schedule() -> None:
    offline = config(lr=5e-3, epochs=10, cooldown_epochs=2, warmup_epochs=0.3, warmup_lr=1e-6, min_lr=1e-5)
    for step, lr in STEP_COSINE_OFFLINE:
        assert recipe.lr_at(step, offline, 45) == lr, step
    imagenet = config(lr_base=1.35e-3, batch_size=64, epochs=200, warmup_epochs=5, warmup_lr=0.0, min_lr=2.5e-6)
    for step, lr in STEP_COSINE_IMAGENET:
        assert recipe.lr_at(step, imagenet, 2502, world_size=8) == lr, step


def test_the_default_schedule_is_step_cosine() -> None:
    assert config().schedule == "step-cosine"
    assert recipe.lr_at(0, config(), 10) == config().warmup_lr


# ----------------------------------------------------------------------------------------------
# Config values (docs/reference/recipes.md, "Hyper-parameters").

CIFAR = dict(lr=1.5e-3, lr_base=None, weight_decay=0.06, epochs=410, cooldown_epochs=10, warmup_epochs=20,
             min_lr=1e-5, smoothing=0.1, cutmix=0.5, mixup_prob=1.0, mixup_switch_prob=0.5, seed=50425, T=4,
             schedule="epoch-cosine", aug_policy="authors-cifar", random_erasing=0.25, precision="fp16",
             eval_precision="same", deterministic=False, augment=True)
EVENT = dict(lr=5e-3, lr_base=None, weight_decay=0.06, batch_size=16, cooldown_epochs=10, warmup_epochs=10,
             warmup_lr=1e-5, min_lr=1e-5, smoothing=0.1, mixup=0.5, cutmix=0.1, mixup_prob=0.5,
             mixup_switch_prob=0.5, mixup_off_epoch=75, T=16, schedule="epoch-cosine", aug_policy=None,
             event_cutmix="authors", random_erasing=0.0, precision="fp16", eval_precision="fp32",
             deterministic=True, augment=True)
IMAGENET_COMMON = dict(lr_base_is_set=True, weight_decay=0.05, batch_size=64, epochs=200, cooldown_epochs=0,
                       warmup_epochs=5, warmup_lr=0.0, smoothing=0.1, cutmix=1.0, mixup_prob=0.5,
                       mixup_switch_prob=0.5, mixup_off_epoch=0, seed=42, schedule="iter-cosine",
                       aug_policy="timm-imagenet", random_erasing=0.25, precision="fp16", eval_precision="same",
                       deterministic=False, augment=True)
EXPECTED = {
    "cifar10.yaml": {**CIFAR, "batch_size": 128, "warmup_lr": 8e-5, "mixup": 0.5, "mixup_off_epoch": 200},
    "cifar100.yaml": {**CIFAR, "batch_size": 64, "warmup_lr": 1e-5, "mixup": 0.75, "mixup_off_epoch": 250},
    "max_resnet18_cifar10.yaml": {**CIFAR, "batch_size": 128, "warmup_lr": 8e-5, "mixup": 0.5,
                                  "mixup_off_epoch": 200},
    "max_resnet18_cifar100.yaml": {**CIFAR, "batch_size": 64, "warmup_lr": 1e-5, "mixup": 0.75,
                                   "mixup_off_epoch": 250},
    "dvsgesture.yaml": {**EVENT, "epochs": 160, "seed": 1779},
    "cifar10dvs.yaml": {**EVENT, "epochs": 106, "seed": 35307},
    **{name: {**IMAGENET_COMMON, "lr_base": blr, "min_lr": m, "mixup": alpha, "T": T}
       for name, (blr, m, alpha, T) in IMAGENET.items()},
}


def test_every_config_is_checked() -> None:
    assert sorted(EXPECTED) == PAPER_CONFIGS and len(PAPER_CONFIGS) == 11


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_config_values_are_the_authors(name: str) -> None:
    cfg = config_from_yaml(name)
    expected = dict(EXPECTED[name])
    assert (cfg.lr_base is not None) == expected.pop("lr_base_is_set", cfg.lr_base is not None)
    values = dataclasses.asdict(cfg)
    for field, value in expected.items():
        assert values[field] == value, (name, field)


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_configs_name_every_recipe_choice(name: str) -> None:
    """The new choices are explicit in every paper config, not left to train.py's defaults."""
    keys = set(yaml_values(name))
    required = {"schedule", "random-erasing", "precision", "eval-precision", "deterministic", "seed"}
    required |= {"event-cutmix"} if config_from_yaml(name).dataset in recipe.EVENT_DATASETS else {"aug-policy"}
    assert required <= keys, required - keys


def test_config_keys_are_train_flags() -> None:
    import settings
    import train

    flags = set(settings.config_keys(train.build_parser()))
    for name in PAPER_CONFIGS:
        assert set(yaml_values(name)) <= flags, (name, set(yaml_values(name)) - flags)


FALSE_STATEMENTS = ("is not in the repository", "96 + cooldown 10", "seed 35307, AMP", "mixup 0.2 /",
                    "min lr 1.0e-5, 5 warm-up", "RandAugment with 1 op", "assumed to apply (not checked")


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_headers_state_values_and_differences(name: str) -> None:
    text = (CONFIGS / name).read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert "Remaining differences:" in header
    assert not any(s in header for s in FALSE_STATEMENTS)
    cfg = config_from_yaml(name)
    assert f"seed {cfg.seed}" in header
    assert f"trains both: {cfg.epochs})" in header or f"{cfg.epochs} epochs, no cool-down" in header
    if name.startswith("max_resnet18"):
        assert "ASSUMES" in header and "Unknown model" in header


# ----------------------------------------------------------------------------------------------
# The resolved record.

@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_resolve_recipe_is_json_and_complete(name: str) -> None:
    cfg = config_from_yaml(name)
    world = 8 if cfg.dataset == "imagenet" else 1
    steps = steps_of(cfg, world)
    record = json.loads(json.dumps(recipe.resolve_recipe(cfg, steps, world)))
    assert {"optimizer", "lr", "weight_decay", "weight_decay_excluded", "batch_size", "schedule",
            "label_smoothing", "mixing", "augmentation", "normalisation", "precision", "determinism", "seed",
            "lr_per_epoch"} <= set(record)
    assert record["optimizer"] == {"name": "AdamW", "betas": [0.9, 0.999], "eps": 1e-8}
    assert record["lr_per_epoch"] == pytest.approx(recipe.lr_per_epoch(cfg, steps, world), rel=0, abs=0)
    assert record["schedule"]["kind"] == cfg.schedule and record["schedule"]["steps_per_epoch"] == steps
    assert record["seed"]["seed"] == cfg.seed
    assert record["precision"]["grad_scaler"] == "dynamic"
    assert record["determinism"]["deterministic"] == cfg.deterministic
    if cfg.dataset in recipe.EVENT_DATASETS:
        assert record["normalisation"] is None and record["mixing"]["event_cutmix"] == "authors"
        assert record["precision"]["eval_means"] == "fp32"
    else:
        assert record["augmentation"]["policy_parameters"]["ops_per_image"] == (2 if world == 8 else 1)


def test_normalisation_is_per_dataset() -> None:
    c10 = recipe.resolve_recipe(config_from_yaml("cifar10.yaml"), 390)["normalisation"]
    c100 = recipe.resolve_recipe(config_from_yaml("cifar100.yaml"), 781)["normalisation"]
    assert c10 == {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]}
    assert c100 == {"mean": [0.5071, 0.4867, 0.4408], "std": [0.2675, 0.2565, 0.2761]}


def test_cifar_policy_fill_is_the_datasets_mean_pixel() -> None:
    fills = [recipe.resolve_recipe(config_from_yaml(n), 100)["augmentation"]["policy_parameters"]["fill"]
             for n in ("cifar10.yaml", "cifar100.yaml")]
    assert fills == [[125, 123, 114], [129, 124, 112]]


def test_mixing_off_epoch_and_erasing_order() -> None:
    record = recipe.resolve_recipe(config_from_yaml("cifar100.yaml"), 781)
    assert record["mixing"]["off_from_epoch"] == 250 and record["mixing"]["mixup_alpha"] == 0.75
    assert "after mixup" in record["augmentation"]["random_erasing"]["where"]
    imagenet = recipe.resolve_recipe(config_from_yaml("imagenet_10_384_t4.yaml"), 2502, 8)
    assert imagenet["mixing"]["off_from_epoch"] is None
    assert "before mixing" in imagenet["augmentation"]["random_erasing"]["where"]


# ----------------------------------------------------------------------------------------------
# Steps per epoch, as train.py's loader counts them.

def test_steps_per_epoch_of_the_paper_settings() -> None:
    assert recipe.steps_per_epoch_for("cifar10", 128) == 390
    assert recipe.steps_per_epoch_for("cifar100", 64) == 781
    assert recipe.steps_per_epoch_for("dvsgesture", 16) == 73
    assert recipe.steps_per_epoch_for("cifar10dvs", 16) == 562
    assert recipe.steps_per_epoch_for("imagenet", 64, 8) == 2502
    assert recipe.steps_per_epoch_for("cifar10", 128, drop_last=False) == 391
    assert recipe.steps_per_epoch_for("digits-dvs", 32, limit=100) == 3


@pytest.mark.parametrize("n,world,batch", [(1437, 1, 32), (1437, 3, 32), (1176, 8, 16), (1000, 7, 9)])
def test_steps_per_epoch_counts_like_the_loader(n: int, world: int, batch: int) -> None:
    torch_data = pytest.importorskip("torch.utils.data")
    for drop_last in (True, False):
        sampler = torch_data.DistributedSampler(list(range(n)), num_replicas=world, rank=world - 1,
                                                shuffle=False, drop_last=drop_last)
        loader = torch_data.DataLoader(list(range(n)), batch_size=batch, sampler=sampler, drop_last=drop_last)
        assert recipe.steps_per_epoch_for("digits-dvs", batch, world, drop_last, limit=n) == len(loader)


def test_config_steps_per_epoch_override_and_limit() -> None:
    cfg = config_from_yaml("dvsgesture.yaml")
    assert recipe.config_steps_per_epoch(cfg) == 73
    assert recipe.config_steps_per_epoch(dataclasses.replace(cfg, limit_train=100)) == 6
    assert recipe.config_steps_per_epoch(dataclasses.replace(cfg, dataset="mine", steps_per_epoch=7)) == 7
    with pytest.raises(ValueError, match="--steps-per-epoch must be at least 1"):
        recipe.config_steps_per_epoch(dataclasses.replace(cfg, steps_per_epoch=0))


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="--steps-per-epoch"):
        recipe.steps_per_epoch_for("mnist", 32)
    with pytest.raises(ValueError, match="lower --batch-size"):
        recipe.steps_per_epoch_for("dvsgesture", 2048)
    with pytest.raises(ValueError, match="epoch-cosine, iter-cosine, step-cosine"):
        recipe.lr_at(0, config(schedule="cosine"), 10)
    with pytest.raises(ValueError, match="at least 1"):
        recipe.lr_at(0, config(), 0)
    with pytest.raises(ValueError, match="--cooldown-epochs"):
        recipe.resolve_recipe(config(epochs=5, cooldown_epochs=6), 10)


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_print_recipe_works_for_every_config(name: str, capsys) -> None:
    """`python train.py --config FILE --print-recipe` prints the resolved record as JSON, with the
    schedule over that dataset's training split (no data on disk needed)."""
    import train

    train.main(["--config", str(CONFIGS / name), "--print-recipe"])
    printed = json.loads(capsys.readouterr().out)
    cfg = config_from_yaml(name)
    assert printed == json.loads(json.dumps(recipe.resolve_recipe(cfg, steps_of(cfg), 1)))
    assert len(printed["lr_per_epoch"]) == cfg.epochs
    assert printed["lr_per_epoch"] == pytest.approx(recipe.lr_per_epoch(cfg, steps_of(cfg)))
    assert (printed["model"], printed["seed"]["seed"]) == (cfg.model, cfg.seed)
