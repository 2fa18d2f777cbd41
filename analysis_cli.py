"""What ``spectrum.py`` and ``energy.py`` share: the model, data and checkpoint options, the shipped
checkpoints, and the small measuring tools (the binary check, forward hooks, CSV output).

Which model is analysed (:func:`build_model`), in this order:

1. ``--checkpoint PATH``: the model its config describes (``checkpoints.load_model``); ``--model``,
   ``--spec``, ``-T`` or ``--neuron`` that contradict the checkpoint are an error naming both values.
   The authors' released files carry no config: ``--model`` names the model, as for ``train.py``.
2. Otherwise the checkpoint shipped in ``docs/checkpoints/`` for this model, spec, neuron and
   ``--seed`` (:data:`SHIPPED`, trained by ``python docs/generate.py checkpoints`` with the project's
   own ``train.py`` on the offline default), so that what a reader sees first is a trained network.
3. Otherwise, or with ``--untrained``, a freshly initialised model (seeded by ``--seed``) whose
   BatchNorm statistics are calibrated on the analysed samples (``maxformer.calibrate_batchnorm``).
   Its outputs say "untrained" in stdout, figure titles and file names.

Bad input ends the command with exit status 2 and one line on stderr (:func:`run_command`).
"""
from __future__ import annotations

import argparse
import csv
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

import checkpoints
import data
import maxformer
import zoo

CHECKPOINTS = Path(__file__).resolve().parent / "docs" / "checkpoints"
DEFAULT_MODEL = "max_former_tiny"
AVG_TINY = "embed=orig,avg,avg mixer=dwc3,dwc3,dwc3"  # spectrum.avg_variant_spec of max_former_tiny


@dataclass(frozen=True)
class ShippedRun:
    """A training run whose final weights ship in ``docs/checkpoints/<name>_seed<seed>.pth``."""
    name: str
    model: str
    spec: str | None
    neuron: str | None
    seeds: tuple[int, ...]

    def path(self, seed: int) -> Path:
        return CHECKPOINTS / f"{self.name}_seed{seed}.pth"

    def train_flags(self, seed: int) -> list[str]:
        """``train.py`` flags of this run beyond the offline default's."""
        flags = ["--model", self.model, "--seed", str(seed)]
        flags += ["--spec", self.spec] if self.spec else []
        return flags + (["--neuron", self.neuron] if self.neuron else [])


# max_former_tiny, its Avg-Pool twin (2 seeds each, for spectrum.py compare) and its IF twin.
SHIPPED = (ShippedRun("max_former_tiny", DEFAULT_MODEL, None, None, (0, 1)),
           ShippedRun("max_former_tiny_avg", DEFAULT_MODEL, AVG_TINY, None, (0, 1)),
           ShippedRun("max_former_tiny_if", DEFAULT_MODEL, None, "if", (0,)))


def model_config(model: str, spec: str | None, neuron: str | None) -> object:
    """The config ``zoo.create_model`` builds for these options (on the meta device: no memory)."""
    with torch.device("meta"):
        return zoo.create_model(model, spec=spec, **({"neuron": neuron} if neuron else {})).cfg


def shipped_checkpoint(model: str, spec: str | None, neuron: str | None, seed: int) -> Path | None:
    """The shipped checkpoint of the network that ``model`` with ``spec`` and ``neuron`` builds (so
    ``embed=orig,avg,avg`` finds the Avg-Pool twin), trained with ``seed``, if one exists."""
    wanted = model_config(model, spec, neuron)
    for run in SHIPPED:
        if seed in run.seeds and run.path(seed).is_file() and model_config(run.model, run.spec, run.neuron) == wanted:
            return run.path(seed)
    return None


# ---------------------------------------------------------------------------------------------
# Measuring tools
# ---------------------------------------------------------------------------------------------

def is_binary(x: torch.Tensor) -> bool:
    """True when every value of ``x`` is 0 or 1 (a spike tensor)."""
    return bool(((x == 0) | (x == 1)).all())


class Hooks:
    """A context manager holding forward hooks while it is entered: subclasses return the handles
    of the hooks they register from :meth:`register`; leaving the context removes them all."""

    def register(self) -> list[RemovableHandle]:
        raise NotImplementedError

    def __enter__(self) -> "Hooks":
        self.handles = self.register()
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


def write_csv(path: Path, rows: Sequence[dict]) -> None:
    """Write dict rows (same keys) to ``path``; floats with 6 significant digits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})


# ---------------------------------------------------------------------------------------------
# Options, inputs, model
# ---------------------------------------------------------------------------------------------

class UsageError(ValueError):
    """Bad input to an analysis command: :func:`run_command` prints it as one line and exits 2."""


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """The model, checkpoint and data options of ``spectrum.py spatial/compare`` and ``energy.py``."""
    parser.add_argument("--model", default=None,
                        help=f"model name from zoo.list_models() (default: the checkpoint's, else {DEFAULT_MODEL})")
    parser.add_argument("--spec", default=None,
                        help='ablation spec for zoo.create_model, e.g. "embed=orig,avg,avg mixer=id,avg,ssa"')
    parser.add_argument("-T", type=int, default=None,
                        help="time steps (default: the checkpoint's; else the dataset's frames for event data, "
                             "else the model's T)")
    parser.add_argument("--neuron", choices=("lif", "if", "relu"), default=None,
                        help="neuron kind (default: the checkpoint's, else the model's)")
    parser.add_argument("--checkpoint", default=None,
                        help="weights to analyse: ours (the model is built from the config it records) or the "
                             "authors' (name the model with --model); default: the checkpoint shipped in "
                             "docs/checkpoints/ for this model, spec, neuron and --seed, if there is one")
    parser.add_argument("--untrained", action="store_true",
                        help="analyse a freshly initialised model (seeded by --seed) whose BatchNorm statistics "
                             "are calibrated on the analysed samples, even where a shipped checkpoint exists")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="let a checkpoint that holds pickled Python objects be unpickled (trusted files only)")
    parser.add_argument("--seed", type=int, default=0,
                        help="training seed of the shipped checkpoint, or the init seed of an untrained model "
                             "(default: 0)")
    parser.add_argument("--dataset", default="digits-dvs",
                        help="dataset name of data.build_datasets (default: digits-dvs, offline, no download)")
    parser.add_argument("--data-dir", default=None, help="dataset folder (default: data.py's ./data)")
    parser.add_argument("--download", action="store_true",
                        help="let data.py download a missing dataset that it can fetch (default: never download)")
    parser.add_argument("--split", choices=("test", "train"), default="test",
                        help="which split to draw samples from (default: test; no augmentation either way)")
    parser.add_argument("--samples", type=int, default=64,
                        help="number of samples, a seeded random subset of the split (default: 64)")
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of the sample subset (default: 0)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default: 32)")
    parser.add_argument("--out", default="runs/analysis", help="output folder (default: runs/analysis)")


@dataclass
class Analysed:
    """A model ready to analyse, with what it is: name, spec and where its weights came from."""
    model: nn.Module
    name: str
    spec: str | None
    checkpoint: Path | None  # None: untrained (BatchNorm calibrated on the analysed samples)

    @property
    def weights(self) -> str:
        """``untrained``, or a file-name-safe tag of the checkpoint (its folder too for best/last.pth)."""
        if self.checkpoint is None:
            return "untrained"
        ckpt = self.checkpoint
        return slug(f"{ckpt.parent.name}-{ckpt.stem}" if ckpt.stem in ("best", "last") else ckpt.stem)

    def tag(self, dataset: str) -> str:
        """File-name stem ``<model>[_<spec>]_<dataset>_<weights>``: variants and checkpoints never share files."""
        spec = f"_{slug(self.spec)}" if self.spec else ""
        return f"{self.name}{spec}_{dataset}_{self.weights}"

    def title(self, dataset: str) -> str:
        """``<model> [spec] on <dataset>, <checkpoint file | untrained>`` for figure titles and reports."""
        spec = f" [{self.spec}]" if self.spec else ""
        return f"{self.name}{spec} on {dataset}, {self.checkpoint.name if self.checkpoint else 'untrained'}"


def slug(text: str) -> str:
    """``text`` with every run of characters other than letters, digits and ``_`` as one ``-``."""
    return re.sub(r"[^A-Za-z0-9_]+", "-", text).strip("-")


def checkpoint_for(args: argparse.Namespace, spec: str | None, explicit: str | None) -> Path | None:
    """The checkpoint to analyse: ``explicit``, else the shipped one (unless ``--untrained``), else None."""
    if explicit and args.untrained:
        raise UsageError("--untrained analyses a fresh model: leave out --checkpoint / --variant-checkpoint")
    if explicit:
        return Path(explicit)
    if args.untrained:
        return None
    return shipped_checkpoint(args.model or DEFAULT_MODEL, spec, args.neuron, args.seed)


def load_inputs(args: argparse.Namespace, T: int | None = None) -> tuple[list[torch.Tensor], data.DatasetInfo]:
    """A fixed, seeded subset (``--samples``, ``--sample-seed``) of the chosen split as input batches,
    and the dataset info; event frames have ``T`` frames (default: ``-T``, else the dataset's)."""
    if args.samples < 1 or args.batch_size < 1:
        raise UsageError(f"--samples ({args.samples}) and --batch-size ({args.batch_size}) must be positive")
    try:
        train, test, info = data.build_datasets(args.dataset, data_dir=args.data_dir, T=args.T or T,
                                                download=args.download, augment=False)
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(f"cannot load dataset {args.dataset!r}: {err}") from None
    subset = data.seeded_subset(test if args.split == "test" else train, args.samples, args.sample_seed)
    return [x for x, _ in torch.utils.data.DataLoader(subset, batch_size=args.batch_size)], info


def flag_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The model overrides given as flags (``-T``, ``--neuron``)."""
    return {key: value for key, value in (("T", args.T), ("neuron", args.neuron)) if value is not None}


def build_model(args: argparse.Namespace, info: data.DatasetInfo, batches: Sequence[torch.Tensor],
                spec: str | None, checkpoint: Path | None) -> Analysed:
    """The model to analyse (see the module docstring), sized for the dataset, in eval mode."""
    overrides = {**info.model_overrides(), **flag_overrides(args)}
    if checkpoint is not None:
        model = checkpoints.load_model(checkpoint, name=args.model, spec=spec, allow_pickle=args.allow_pickle,
                                     **overrides)
        record = model.config_record
        return Analysed(model.eval(), record["name"], record["spec"], checkpoint)
    torch.manual_seed(args.seed)
    name = args.model or DEFAULT_MODEL
    model = zoo.create_model(name, spec=spec, **overrides)
    return Analysed(maxformer.calibrate_batchnorm(model, batches), name, spec, None)


def run_command(parser: argparse.ArgumentParser, command: Callable[[argparse.Namespace], None],
                args: argparse.Namespace) -> None:
    """Run ``command(args)``; bad input (a usage, model, data or checkpoint error) exits 2 with one line."""
    try:
        command(args)
    except (ValueError, FileNotFoundError) as err:  # UsageError, CheckpointError, CheckpointMismatchError, ...
        message = " ".join(str(err).split())
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def prepare(args: argparse.Namespace, spec: str | None = None,
            checkpoint: str | None = None) -> tuple[list[torch.Tensor], data.DatasetInfo, Analysed]:
    """Inputs and model of one analysis: the checkpoint to use (:func:`checkpoint_for`); for one of
    ours, the flags checked against its config before any data is built, and event frames with the
    T it was trained with; the data; the model (:func:`build_model`). Says what it analyses."""
    path = checkpoint_for(args, spec, checkpoint)
    T = None
    if path is not None and checkpoints.is_ours(checkpoints.read_checkpoint(path, args.allow_pickle)):
        T = checkpoints.load_model(path, name=args.model, spec=spec, allow_pickle=args.allow_pickle,
                                 **flag_overrides(args)).T
    batches, info = load_inputs(args, T)
    analysed = build_model(args, info, batches, spec, path)
    print(f"analysing {analysed.title(info.name)}", flush=True)
    return batches, info, analysed
