"""The model zoo: every model of the paper by name, ablation spec strings, and the record that rebuilds a model.

:data:`MODELS` names the configuration of every official model (Tables 2, 3, 5 and the event
rows), plus ``max_former_tiny`` for the offline default; :func:`create_model` builds one, with
overrides and an ablation ``spec`` (:func:`parse_spec`, Tables 4 and 7), and records how in
``model.config_record`` (:func:`model_config`). The architecture itself is maxformer.py.
"""
from __future__ import annotations

import difflib
from dataclasses import asdict, fields, replace
from typing import Sequence

from torch import nn

from maxformer import MaxFormer, MaxFormerConfig, MaxResNet, MaxResNetConfig, NetConfig


def _imagenet(dim: int, embeds: tuple[str, ...], mixers: tuple[str, ...]) -> MaxFormerConfig:
    """ImageNet "10-D": widths D/4, D/2, D with 1, 2, 7 blocks, D/64 heads, T=1 (Table 3)."""
    return MaxFormerConfig(dims=(dim // 4, dim // 2, dim), depths=(1, 2, 7), embeds=embeds, mixers=mixers,
                           num_heads=dim // 64, num_classes=1000, img_size=224, T=1, init="imagenet")


_EVENT = dict(dims=(128, 256), depths=(1, 1), mlp_ratio=1.0, num_heads=16, in_channels=2, img_size=128, T=16)
_QK_CIFAR = dict(embeds=("orig", "1max", "1max"), mixers=("qk", "qk", "ssa"))
_QK_EVENT = dict(_EVENT, embeds=("max_plus", "1max"), mixers=("qk", "ssa"))
_MF_EVENT = dict(_EVENT, embeds=("max_plus", "max"), mixers=("dwc3", "ssa"))
_RESNET_2222 = dict(layers=(2, 2, 2, 2), widths=(64, 128, 256, 512))

MODELS: dict[str, MaxFormerConfig | MaxResNetConfig] = {
    "max_former_cifar10": MaxFormerConfig(),
    "max_former_cifar100": MaxFormerConfig(num_classes=100),
    "max_former_cifar10dvs": MaxFormerConfig(**_MF_EVENT, num_classes=10),
    "max_former_dvsgesture": MaxFormerConfig(**_MF_EVENT, num_classes=11),
    **{f"max_former_10_{d}": _imagenet(d, ("orig_imagenet", "max", "max"), ("dwc7", "dwc5", "ssa"))
       for d in (384, 512, 768)},
    "ms_qkformer_cifar10": MaxFormerConfig(**_QK_CIFAR),
    "ms_qkformer_cifar100": MaxFormerConfig(**_QK_CIFAR, num_classes=100),
    "ms_qkformer_cifar10dvs": MaxFormerConfig(**_QK_EVENT, num_classes=10),
    "ms_qkformer_dvsgesture": MaxFormerConfig(**_QK_EVENT, num_classes=11),
    **{f"ms_qkformer_10_{d}": _imagenet(d, ("qk_init", "qk_stage", "qk_stage"), ("qk", "qk", "ssa"))
       for d in (384, 512, 768)},
    "max_resnet18_cifar10": MaxResNetConfig(),
    "max_resnet18_cifar100": MaxResNetConfig(num_classes=100),
    "max_resnet18_2222_cifar10": MaxResNetConfig(**_RESNET_2222),
    "max_resnet18_2222_cifar100": MaxResNetConfig(**_RESNET_2222, num_classes=100),
    # Small Max-Former for the offline default dataset (2x24x24 event frames, T=4): trains on a CPU in minutes.
    "max_former_tiny": MaxFormerConfig(dims=(16, 32, 64), depths=(1, 1, 1), embeds=("orig", "max", "max"),
                                       mixers=("dwc3", "dwc3", "dwc3"), mlp_ratio=2.0, in_channels=2,
                                       img_size=24, num_heads=4),
}


def list_models() -> list[str]:
    """Every name :func:`create_model` accepts; ``<name>_ann`` is the non-spiking (ReLU) twin."""
    return sorted(MODELS) + sorted(f"{name}_ann" for name in MODELS)


SPEC_KEYS = {"embed": "embeds", "mixer": "mixers", "depth": "depths", "dim": "dims",
             "mlp": "mlp_ratio", "heads": "num_heads", "layers": "layers", "widths": "widths"}


def parse_spec(spec: str) -> dict[str, object]:
    """Parse an ablation spec such as ``"embed=orig,max,max mixer=id,dwc3,ssa depth=1,1,2"`` into
    config overrides (Tables 4 and 7). Keys: ``embed mixer depth dim mlp heads layers widths``.

    A bad item raises ValueError naming it; names of embeddings and mixers, and the number of
    entries per stage, are checked when the model is built.
    """
    out: dict[str, object] = {}
    for item in spec.split():
        key, sep, value = item.partition("=")
        if not sep or key not in SPEC_KEYS:
            raise ValueError(f"bad spec item {item!r}; write key=value with key in {sorted(SPEC_KEYS)}")
        parts = value.split(",")
        if not all(parts):
            raise ValueError(f"bad spec item {item!r}: {key} needs comma-separated values, e.g. {key}=a,b,c")
        try:
            if key in ("embed", "mixer"):
                out[SPEC_KEYS[key]] = tuple(parts)
            elif key == "mlp":
                out[SPEC_KEYS[key]] = float(value)
            elif key == "heads":
                out[SPEC_KEYS[key]] = int(value)
            else:
                out[SPEC_KEYS[key]] = tuple(int(p) for p in parts)
        except ValueError:
            kind = "a number" if key in ("mlp", "heads") else "comma-separated integers"
            raise ValueError(f"bad spec item {item!r}: {key} takes {kind}") from None
    return out


def check_config(cfg: NetConfig) -> None:
    """ValueError naming the field for any size, count or rate that cannot build a model."""
    positive = {"T": cfg.T, "num_classes": cfg.num_classes, "in_channels": cfg.in_channels, "img_size": cfg.img_size}
    if isinstance(cfg, MaxFormerConfig):
        positive.update(num_heads=cfg.num_heads, **{f"dims[{i}]": d for i, d in enumerate(cfg.dims)},
                        **{f"depths[{i}]": d for i, d in enumerate(cfg.depths)})
        if not (isinstance(cfg.mlp_ratio, (int, float)) and cfg.mlp_ratio > 0):
            raise ValueError(f"mlp_ratio must be a positive number, got {cfg.mlp_ratio!r}")
    else:
        positive.update(**{f"layers[{i}]": n for i, n in enumerate(cfg.layers)},
                        **{f"widths[{i}]": w for i, w in enumerate(cfg.widths)})
    for field, value in positive.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{field} must be a positive integer, got {value!r}")


def jsonable(value: object) -> object:
    """Tuples as lists, so a config record survives JSON unchanged."""
    return list(value) if isinstance(value, tuple) else value


def dims_for_width(dims: Sequence[int], width: object) -> tuple[int, ...]:
    """The stage widths ``dims`` scaled so that the last is ``width`` (the D of the paper's "4-384"
    names); ValueError for a width that is not a positive integer."""
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive integer, got {width!r}")
    return tuple(d * width // dims[-1] for d in dims)


def create_model(name: str, spec: str | None = None, **overrides) -> nn.Module:
    """Build a model of the zoo by name (:func:`list_models`), with config overrides such as
    ``T``, ``num_classes``, ``in_channels``, ``img_size``, ``neuron`` (``lif``/``if``/``relu``),
    ``neuron_backend``, ``dims``, ``embeds``, ``mixers``, ``width`` (the last stage's width D of
    "4-384"; earlier stages scale with it), and/or an ablation ``spec`` string.

    Bad names, overrides and specs raise ValueError saying what is wrong. The model records how it
    was built in ``model.config_record`` (see :func:`model_config`).
    """
    base = name.removesuffix("_ann")
    if base not in MODELS:
        close = difflib.get_close_matches(name, list_models(), n=3)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise ValueError(f"unknown model {name!r}; {hint}choose one of: {', '.join(list_models())}")
    if name.endswith("_ann"):
        overrides.setdefault("neuron", "relu")
    if spec:
        overrides = {**parse_spec(spec), **overrides}
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}  # JSON lists
    config = MODELS[base]
    if "width" in overrides:
        if not isinstance(config, MaxFormerConfig):
            raise ValueError(f"width applies to Max-Former models, not {name!r}; use widths=... for Max-ResNet")
        overrides["dims"] = dims_for_width(overrides.get("dims", config.dims), overrides.pop("width"))
    valid = {f.name for f in fields(config)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"unknown override(s) {unknown} for {name!r}; valid: {sorted(valid | {'width'})}")
    config = replace(config, **overrides)
    check_config(config)
    model = MaxFormer(config) if isinstance(config, MaxFormerConfig) else MaxResNet(config)
    model.config_record = {"name": name, "spec": spec or None,
                           "overrides": {k: jsonable(v) for k, v in asdict(config).items()}}
    return model


def model_config(model: nn.Module) -> dict:
    """The JSON-able record of everything that changes ``model``'s function:
    ``{"name", "spec", "overrides"}``, where ``overrides`` is every field of the resolved config, so
    ``create_model(cfg["name"], spec=cfg["spec"], **cfg["overrides"])`` rebuilds the same function."""
    try:
        record = model.config_record
    except AttributeError:
        raise ValueError(f"{type(model).__name__} was not built by zoo.create_model; it has no config record") from None
    return {"name": record["name"], "spec": record["spec"], "overrides": dict(record["overrides"])}
