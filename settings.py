"""train.py's settings system: a frozen dataclass whose fields are the flags (``setting(...)``), read
from the command line and a YAML file of the same names (``--config``), written back as YAML
(``config.yaml`` of a run folder), and restored from a checkpoint on --resume / --eval-only, where
a flag that contradicts the recorded value is an error unless its :class:`Roles` allow it.
"""
from __future__ import annotations

import argparse
import math
import sys
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import Field, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import yaml

from checkpoints import FREE_OVERRIDES, is_ours

T = TypeVar("T")


# Settings: a frozen dataclass whose fields are the flags (``setting(...)``), read from the command
# line and a YAML file of the same names, written back as YAML, and compared with a checkpoint's.

class SettingsError(ValueError):
    """Flags that contradict the settings a checkpoint records."""


def checked(kind: type, test: Callable[[float], bool], what: str) -> Callable[[str], float]:
    """An argparse type: ``kind(text)`` that must pass ``test``, else "must be <what>"."""
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value
    return convert


positive_int = checked(int, lambda v: v > 0, "a positive integer")
count = checked(int, lambda v: v >= 0, "a non-negative integer")
positive = checked(float, lambda v: v > 0 and math.isfinite(v), "a positive number")
non_negative = checked(float, lambda v: v >= 0 and math.isfinite(v), "a non-negative number")
probability = checked(float, lambda v: 0 <= v <= 1, "a probability in [0, 1]")


def setting(default, help: str, **flag) -> Any:
    """A settings field and its flag: argparse keywords in ``flag`` (``type``, ``choices``,
    ``metavar``), plus ``names`` (option strings) and ``switch`` (a bool without --no- form)."""
    return field(default=default, metadata={"help": help, **flag})


class FlagParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage dump; 'unrecognized arguments' adds a
    second, listing the valid flags), exit status 2."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments"):
            message += "\nvalid flags: " + " ".join(valid_flags(self))
        self.exit(2, f"{self.prog}: error: {message}\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except None: those flags' help says what happens when unset."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help if action.default is None else super()._get_help_string(action)


def flag_names(f: Field) -> tuple[str, ...]:
    return f.metadata.get("names", ("--" + f.name.replace("_", "-"),))


def flag_of(cls: type) -> dict[str, str]:
    """Field name -> its flag's first spelling ('batch_size' -> '--batch-size')."""
    return {f.name: flag_names(f)[0] for f in fields(cls)}


def flag_parser(cls: type, prog: str, description: str, groups: dict[str, str], defaults: bool = True) -> FlagParser:
    """One flag per field of ``cls``; a field named in ``groups`` starts a help section.
    ``defaults=False`` leaves the flags not given out of the result."""
    p = FlagParser(prog=prog, description=description, allow_abbrev=False, formatter_class=HelpFormatter)
    hints, group = typing.get_type_hints(cls), p
    for f in fields(cls):
        group = p.add_argument_group(groups[f.name]) if f.name in groups else group
        opts = {k: v for k, v in f.metadata.items() if k not in ("names", "switch")}
        kind = next(t for t in typing.get_args(hints[f.name]) or (hints[f.name],) if t is not type(None))
        if kind is bool:
            opts["action"] = "store_true" if f.metadata.get("switch") else argparse.BooleanOptionalAction
        else:
            opts.setdefault("type", kind)
        group.add_argument(*flag_names(f), dest=f.name, default=f.default if defaults else argparse.SUPPRESS, **opts)
    return p


def valid_flags(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(s for a in parser._actions for s in a.option_strings if s not in ("-h", "--help"))


def config_keys(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Config-file key -> flag: the flag's first spelling without dashes ('batch-size', 'T', 'compile')."""
    return {a.option_strings[0].lstrip("-"): a for a in parser._actions
            if a.option_strings and a.dest not in ("help", "config")}


def config_to_argv(path: str, parser: argparse.ArgumentParser) -> list[str]:
    """Turn a YAML config into command-line tokens, so that later flags override it."""
    try:
        cfg = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as e:
        parser.error(f"cannot read --config {path}: {e.strerror}")
    except yaml.MarkedYAMLError as e:
        parser.error(f"--config {path}, line {e.problem_mark.line + 1}: not valid YAML ({e.problem})")
    except yaml.YAMLError as e:
        parser.error(f"--config {path}: not valid YAML ({e})")
    if not isinstance(cfg, dict):
        parser.error(f"--config {path} must be a mapping of flag names to values")
    keys = config_keys(parser)
    argv = []
    for key, value in cfg.items():
        name = str(key).replace("_", "-") if str(key) not in keys else str(key)
        if name not in keys:
            parser.error(f"unknown key {key!r} in {path}; valid keys: {', '.join(sorted(keys))}")
        flag = keys[name].option_strings[0]
        if value is None:
            continue
        if isinstance(keys[name], argparse.BooleanOptionalAction):
            argv.append(flag if value else "--no-" + name)
        elif keys[name].nargs == 0:
            argv += [flag] if value else []
        else:
            argv += [flag, str(value)]
    return argv


def parse_flags(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> dict:
    """The --config file's settings, then the command line's over them."""
    argv = list(argv if argv is not None else sys.argv[1:])
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    config = pre.parse_known_args(argv)[0].config
    return vars(parser.parse_args((config_to_argv(config, parser) if config else []) + argv))


def to_yaml(cfg: object, skip: frozenset[str]) -> str:
    """The settings as a --config file (``skip``: fields left out)."""
    keys = {name: flag.lstrip("-") for name, flag in flag_of(type(cfg)).items()}
    return yaml.safe_dump({keys[k]: v for k, v in asdict(cfg).items() if k not in skip and v is not None},
                          sort_keys=False)


def restore_settings(cfg: T, given: frozenset[str], saved: dict, keys: Iterable[str], source: str,
                     may_change: frozenset[str], override: bool) -> T:
    """``cfg`` with ``saved``'s values for ``keys``; a flag given that contradicts one raises
    SettingsError naming both values, unless it is in ``may_change`` or ``override`` is set."""
    names, now = flag_of(type(cfg)), asdict(cfg)
    keys = [k for k in keys if k in saved]
    clashes = [k for k in keys if k in given and k not in may_change and now[k] != saved[k]]
    if clashes and not override:
        listed = "; ".join(f"{names[k]} {now[k]} contradicts the recorded {saved[k]}" for k in clashes)
        raise SettingsError(f"{listed} ({source}); drop the flag, or pass --override to change it")
    for k in clashes:
        print(f"--override: {names[k]} {saved[k]} -> {now[k]} (recorded in {source})", flush=True)
    kept = {k: now[k] for k in keys if k in given and (k in may_change or k in clashes)}
    return replace(cfg, **{**{k: saved[k] for k in keys}, **kept})


@dataclass(frozen=True)
class Roles:
    """The settings by what a checkpoint does with them (field names of the settings dataclass)."""

    run_only: frozenset[str]      # what this command does and where it writes: never restored
    may_change: frozenset[str]    # restored on --resume, but a flag given may change them
    model: tuple[str, ...]        # what --eval-only restores: the model and the data it reads


def settings_from(ckpt: dict, cfg: T, given: frozenset[str], source: str, world: int, roles: Roles) -> T:
    """--resume: the run's recorded settings (``cfg.resume``); --eval-only: the model's. Flags may
    not contradict them (SettingsError) unless they are in ``roles.may_change`` or --override is given."""
    if cfg.resume and not is_ours(ckpt, records_run=True):
        raise SettingsError(f"{source} was not written by this train.py (no recorded settings); --resume needs "
                            "our last.pth or best.pth, --eval-only --checkpoint evaluates other files")
    if cfg.resume:
        if "optimizer" not in ckpt:
            raise SettingsError(f"{source} holds weights only (like the shipped docs/checkpoints/*.pth), so it cannot "
                                "be resumed; evaluate it with --eval-only --checkpoint, or start a new run")
        if ckpt["world"] != world and not cfg.override:
            raise SettingsError(f"{world} processes contradict the {ckpt['world']} recorded in {source}; "
                                "pass --override")
        saved = ckpt["config"]
        restored = restore_settings(cfg, given, saved, [k for k in saved if k not in roles.run_only], source,
                                    roles.may_change, cfg.override)
        if restored.epochs != saved["epochs"] and ckpt["epoch"] < restored.epochs:
            print(f"--epochs {restored.epochs} (was {saved['epochs']}): the {restored.schedule} schedule is "
                  f"recomputed over {restored.epochs} epochs; the learning rate follows the new curve from step "
                  f"{ckpt['step']} of epoch {ckpt['epoch'] + 1} on", flush=True)
        return restored
    if is_ours(ckpt, records_run=True):
        return restore_settings(cfg, given, ckpt["config"], roles.model, source, roles.may_change, cfg.override)
    if "model" not in given:
        raise SettingsError(f"{source} records no model config (the authors' released weights?): name its model "
                            "with --model NAME (and -T, --spec, --neuron if they differ from the model's defaults)")
    return cfg


def same_model(record: dict, recorded: dict, source: str) -> None:
    """``record`` (what the settings and data build) must be the model ``source`` records, up to
    :data:`FREE_OVERRIDES` (the neuron backend: same function)."""
    def function(r: dict) -> dict:
        return {**r, "overrides": {k: v for k, v in r["overrides"].items() if k not in FREE_OVERRIDES}}
    if function(record) != function(recorded):
        raise SettingsError(f"{source} holds the model {recorded}, but these settings and data build {record}")
