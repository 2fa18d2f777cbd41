"""Run folders and checkpoint files for train.py: one writer per folder, saves that leave the folder
consistent at every crash point, and one reader for our checkpoints and the authors' released files
(and loading them into a model); and stopping on Ctrl-C. train.py's settings are settings.py.

A run folder holds ``lock`` (while a run writes), ``config.yaml`` (the resolved settings, loadable
with ``train.py --config``), ``recipe.json``, ``last.pth``, ``best.pth``, ``log.csv``, TensorBoard
scalars under ``tensorboard/`` and, at the end, ``curves.png``. Every checkpoint carries the epoch
history, so ``log.csv`` is rewritten from the checkpoint a run resumes from: a crash between two
saves never leaves a missing or duplicated row. At the end of an epoch the saves run in the order
best.pth, last.pth, log.csv, each through a per-process temporary file and ``os.replace``.
"""
from __future__ import annotations

import csv
import math
import os
import pickle
import random
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from zoo import create_model, dims_for_width, jsonable, parse_spec

CHECKPOINT_FORMAT = "maxformer-train/2"
CSV_COLUMNS = ("epoch", "train_loss", "train_acc1", "test_loss", "test_acc1", "test_acc5", "lr", "seconds")
RUN_FILES = ("last.pth", "best.pth", "log.csv", "config.yaml", "recipe.json", "curves.png", "tensorboard")
LOCK_NAME = "lock"
MiB = 2 ** 20
T = TypeVar("T")


class RunFolderError(RuntimeError):
    """A run folder that cannot be used: another run's, locked by a live process, or not writable."""


class NonFiniteError(RuntimeError):
    """A NaN or infinity in the loss, gradient norm, weights or BatchNorm statistics."""


# ----------------------------------------------------------------------------------------------
# Reading: ours and the authors' released files; loading them into a model.

# Known older key names of the released checkpoints -> the current names used here.
KEY_ALIASES = ((".mixer.conv5.", ".mixer.conv."), (".mixer.conv5_bn.", ".mixer.conv_bn."))
# Ours: the older format records the weights only; the current one (CHECKPOINT_FORMAT) also the model
# config and the run's settings.
OUR_FORMATS = ("maxformer-train/1", CHECKPOINT_FORMAT)
# Overrides that change how a model runs, not what it computes: free to differ from a checkpoint's.
FREE_OVERRIDES = ("neuron_backend",)


class CheckpointError(ValueError):
    """A file that cannot be read as a checkpoint (corrupt, or needing pickle without the opt-in)."""


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model: lists missing, unexpected and mis-shaped tensors, or
    names a requested setting that contradicts the checkpoint's own config."""


def read_checkpoint(path: str | Path, allow_pickle: bool = False) -> dict:
    """The contents of a checkpoint file, ours (``format`` in :data:`OUR_FORMATS`) or the authors'.

    Loads with ``torch.load(weights_only=True)``; a file that pickles other Python objects is only
    unpickled with ``allow_pickle`` (unpickling can run arbitrary code). Raises FileNotFoundError for
    a missing file and :class:`CheckpointError` for an empty, truncated or random one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" not in str(err):
            raise CheckpointError(f"{path} is corrupt or not a checkpoint (it cannot be unpickled)") from None
        if not allow_pickle:
            raise CheckpointError(
                f"{path} holds pickled Python objects besides tensors (for example training arguments), so it "
                f"was not loaded with torch.load(weights_only=True). Unpickling can run arbitrary code: only if "
                f"you trust the file's source, pass allow_pickle=True (command line: --allow-pickle).") from None
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch.load's errors for a broken zip or stream have no common base class
        raise CheckpointError(f"{path} is corrupt or not a checkpoint ({type(err).__name__})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is corrupt or not a checkpoint (it holds a {type(ckpt).__name__})")
    return ckpt


def is_ours(ckpt: Mapping, records_run: bool = False) -> bool:
    """True for a checkpoint written by train.py; with ``records_run``, only in the current format,
    which records the model config and the run's settings (what --resume restores)."""
    return ckpt.get("format") in (OUR_FORMATS[-1:] if records_run else OUR_FORMATS)


def official_state_dict(checkpoint: str | Path | Mapping, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint (a path or its contents): unwraps ``{"model": ...}`` /
    ``{"state_dict": ...}``, strips DDP's ``module.`` prefix and renames known older keys
    (:data:`KEY_ALIASES`)."""
    sd = checkpoint if isinstance(checkpoint, Mapping) else read_checkpoint(checkpoint, allow_pickle)
    for wrapper in ("model", "state_dict", "model_ema"):
        if isinstance(sd.get(wrapper), Mapping):
            sd = sd[wrapper]
            break
    out = {}
    for key, value in sd.items():
        if not torch.is_tensor(value):
            raise ValueError(f"checkpoint entry {key!r} is a {type(value).__name__}, not a tensor")
        key = key.removeprefix("module.")
        for old, new in KEY_ALIASES:
            key = key.replace(old, new)
        out[key] = value
    return out


def load_official(model: nn.Module, checkpoint: str | Path | Mapping, allow_pickle: bool = False) -> nn.Module:
    """Load the authors' weights (a path or a state dict) into ``model``, strictly.

    Keys are matched by name; a checkpoint that uses another naming scheme (fewer than half of its
    names are ours, as in older releases) is matched by position, as the authors' own ImageNet test
    script does, provided it has exactly as many tensors as the model. Any missing, unexpected or
    mis-shaped tensor raises :class:`CheckpointMismatchError` listing them all.
    """
    sd = official_state_dict(checkpoint, allow_pickle)
    own = model.state_dict()
    if len(sd) == len(own) and 2 * len(set(sd) & set(own)) < len(own):  # another naming scheme
        sd = dict(zip(own, sd.values()))
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    misshaped = [f"{k}: checkpoint {list(sd[k].shape)} vs model {list(own[k].shape)}"
                 for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or misshaped:
        lines = [f"checkpoint does not fit {type(model).__name__} ({len(sd)} tensors vs {len(own)})"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if items:
                lines.append(f"{title} ({len(items)}): " + ", ".join(items))
        raise CheckpointMismatchError("\n".join(lines))
    model.load_state_dict(sd, strict=True)
    return model


def check_against(record: dict, name: str | None, spec: str | None, overrides: dict, where: str) -> None:
    """CheckpointMismatchError if a requested name, spec item or override contradicts ``record``."""
    if name is not None and name != record["name"]:
        raise CheckpointMismatchError(f"{where} holds model {record['name']!r}, not {name!r}")
    stored = record["overrides"]
    requested = {**(parse_spec(spec) if spec else {}), **overrides}
    if "width" in requested and "dims" in stored:
        requested["dims"] = dims_for_width(stored["dims"], requested.pop("width"))
    for key, value in requested.items():
        if key in FREE_OVERRIDES:
            continue
        if key not in stored:
            raise ValueError(f"unknown override {key!r} for {record['name']!r}; valid: {sorted(stored)}")
        if jsonable(value) != stored[key]:
            raise CheckpointMismatchError(f"{where} was trained with {key}={stored[key]!r}, not {key}={jsonable(value)!r}")


def load_model(checkpoint: str | Path, name: str | None = None, spec: str | None = None,
               allow_pickle: bool = False, **overrides) -> nn.Module:
    """The model a checkpoint holds, with its weights.

    Ours carries ``model_config`` (:func:`model_config`): the model is built from it, and a given
    ``name``, ``spec`` item or override that contradicts it raises :class:`CheckpointMismatchError`
    naming both values (``neuron_backend`` may differ). The authors' files, and ours from before
    ``model_config``, carry no config: ``name`` (with ``spec`` and overrides) says what they hold.
    """
    ckpt = read_checkpoint(checkpoint, allow_pickle)
    record = ckpt.get("model_config") if is_ours(ckpt) else None
    if record is None:
        if name is None:
            raise ValueError(f"{checkpoint} records no model config (the authors' files do not): name the model")
        model = create_model(name, spec, **overrides)
    else:
        check_against(record, name, spec, overrides, str(checkpoint))
        free = {k: v for k, v in overrides.items() if k in FREE_OVERRIDES}
        model = create_model(record["name"], spec=record["spec"], **{**record["overrides"], **free})
    return load_official(model, ckpt)


# ----------------------------------------------------------------------------------------------
# Run folders: never another run's files, one writer, writable before anything is built.

def new_run_folder(parent: Path, name: str) -> Path:
    """Create ``parent/name`` exclusively, adding -2, -3, ... if it exists: names never collide."""
    for n in range(1, 10_000):
        folder = parent / (name if n == 1 else f"{name}-{n}")
        try:
            parent.mkdir(parents=True, exist_ok=True)
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
        except OSError as e:
            raise RunFolderError(f"cannot create the run folder {folder} ({e.strerror}); {free_space(parent)}; "
                                 "pick another --output") from None
    raise RunFolderError(f"{parent} already holds 10000 runs named {name}; pick --output")


def run_files(folder: Path) -> list[str]:
    return [name for name in RUN_FILES if (folder / name).exists()]


def claim_folder(folder: Path, resuming_here: bool, overwrite: bool) -> None:
    """Make the (locked) ``folder`` this run's: refuse another run's files unless resuming it or ``overwrite``."""
    found = run_files(folder)
    if found and not resuming_here:
        if not overwrite:
            raise RunFolderError(f"{folder} holds another run ({', '.join(found)}); resume it with --resume "
                                 f"{folder / 'last.pth'}, pick another --output, or pass --overwrite to replace it")
        for name in found:
            target = folder / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()


def free_space(folder: Path) -> str:
    """Free space on the file system holding ``folder`` (or its nearest existing parent)."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
    return f"{shutil.disk_usage(existing).free / MiB:.0f} MiB free on {existing}"


def check_writable(folder: Path, need_bytes: int) -> None:
    """Write and delete a probe file, and check for room for ``need_bytes``; before any data is built."""
    probe = folder / f".probe.{os.getpid()}.tmp"
    try:
        probe.write_bytes(b"0")
        probe.unlink()
    except OSError as e:
        raise RunFolderError(f"cannot write to the run folder {folder} ({e.strerror}); {free_space(folder)}; "
                             "pick another --output") from None
    if shutil.disk_usage(folder).free < need_bytes:
        raise RunFolderError(f"not enough space for checkpoints in {folder}: they need about "
                             f"{need_bytes / MiB:.0f} MiB, {free_space(folder)}")


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder/lock`` (``pid@host``) while the block runs: one writer per run folder.

    A lock whose process is gone (same host) is stale and taken over; a live one is an error.
    """
    lock = folder / LOCK_NAME
    me = f"{os.getpid()}@{socket.gethostname()}"
    for _ in range(2):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            owner = lock.read_text().strip() if lock.exists() else ""
            pid, _, host = owner.partition("@")
            if host != socket.gethostname() or (pid.isdigit() and process_alive(int(pid))):
                raise RunFolderError(f"{folder} is in use by process {owner} (lock file {lock}); wait for it, "
                                     "pick another --output, or delete the lock if that process is gone") from None
            print(f"taking over the stale lock {lock} of process {owner}, which has exited", flush=True)
            lock.unlink(missing_ok=True)
        except OSError as e:
            raise RunFolderError(f"cannot write to the run folder {folder} ({e.strerror}); {free_space(folder)}; "
                                 "pick another --output") from None
    else:
        raise RunFolderError(f"cannot take the lock {lock}; another process keeps creating it")
    os.write(fd, me.encode())
    os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def newer_last(resume: Path, ckpt: dict) -> str | None:
    """If ``resume`` is not its folder's last.pth and that one is further on, say so."""
    last = resume.parent / "last.pth"
    if resume.name == "last.pth" or not last.exists():
        return None
    other = read_checkpoint(last)
    if (other.get("epoch", 0), other.get("step", 0)) <= (ckpt["epoch"], ckpt["step"]):
        return None
    return (f"resuming {resume} (epoch {ckpt['epoch']}) in its own folder would overwrite the newer {last} "
            f"(epoch {other['epoch']}) and its log rows; continue in another folder with --output DIR, "
            f"or pass --overwrite to discard the epochs after {ckpt['epoch']}")


def open_run_folder(out: Path | None, resume: Path | None, ckpt: dict | None, overwrite: bool, need_bytes: int,
                    held: ExitStack, default_name: str) -> Path:
    """The run folder (``out``, else ``resume``'s folder, else a new ``runs/<default_name>``), locked
    until ``held`` closes, claimed for this run and writable."""
    out = out or (resume.parent if resume else new_run_folder(Path("runs"), default_name))
    resuming_here = resume is not None and out.resolve() == resume.parent.resolve()
    clash = newer_last(resume, ckpt) if resuming_here else None
    if clash and not overwrite:
        raise RunFolderError(clash)
    held.enter_context(folder_lock(out))
    claim_folder(out, resuming_here, overwrite)
    check_writable(out, need_bytes)
    return out


# ----------------------------------------------------------------------------------------------
# Writing: per-process temporary file, then os.replace; a failed write leaves the old file intact.

def replace_atomically(path: Path, write) -> None:
    """``write(tmp)`` then rename over ``path``; on an OS error, the old ``path`` is untouched."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
        raise RunFolderError(f"cannot write {path} ({e.strerror}); {free_space(path.parent)}; {kept}") from None


def nonfinite(named: Sequence[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the floating-point tensors holding NaN or infinity (one device sync)."""
    floats = [(name, t) for name, t in named if t.is_floating_point()]
    if not floats:
        return []
    bad = torch.stack([~torch.isfinite(t.detach()).all() for _, t in floats]).cpu()
    return [name for (name, _), b in zip(floats, bad.tolist()) if b]


def what_went_nonfinite(net: torch.nn.Module, loss: float, grad_bad: float) -> str:
    """Which of the loss, the gradient norm, the weights and the BatchNorm statistics hold NaN or inf."""
    parts = [f"the loss is {loss}"] if not math.isfinite(loss) else []
    parts += ["the gradient norm is not finite"] if grad_bad else []
    for kind, names in (("weight", nonfinite(list(net.named_parameters()))),
                        ("BatchNorm statistics", nonfinite(list(net.named_buffers())))):
        if names:
            parts.append(f"{len(names)} {kind} tensors are not finite ({', '.join(names[:3])}"
                         f"{', ...' if len(names) > 3 else ''})")
    return "; ".join(parts) or "another rank's values are not finite"


def save_checkpoint(state: dict, path: Path) -> None:
    """Write ``state`` (with ``state["model"]`` a state dict) unless the model holds non-finite tensors."""
    broken = nonfinite(list(state["model"].items()))
    if broken:
        raise NonFiniteError(f"{len(broken)} model tensors are not finite ({broken[0]}, ...), so {path} was not written")
    replace_atomically(path, lambda tmp: torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp))


def write_log(path: Path, history: Sequence[dict]) -> None:
    """log.csv from the epoch history a checkpoint carries (rewritten whole: never duplicated rows)."""
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for row in history:
                writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    replace_atomically(path, write)


def write_text(path: Path, text: str) -> None:
    replace_atomically(path, lambda tmp: tmp.write_text(text))


def scalar_writer(folder: Path, purge_step: int):
    """TensorBoard scalars in ``folder``; events from ``purge_step`` on (a resumed run's redone epochs) are dropped."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(folder), purge_step=purge_step)


def write_curves(path: Path, history: Sequence[dict], title: str) -> None:
    """A PNG of loss and top-1 per epoch, train and test."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (loss, acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    for split in ("train", "test"):
        loss.plot(epochs, [row[f"{split}_loss"] for row in history], marker="o", label=split)
        acc.plot(epochs, [row[f"{split}_acc1"] for row in history], marker="o", label=split)
    loss.set(xlabel="epoch", ylabel="loss")
    acc.set(xlabel="epoch", ylabel="top-1 (%)")
    acc.legend()
    fig.suptitle(title)
    fig.tight_layout()
    replace_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# Random state, per process and gathered from every rank; the run folder decided on rank 0.

def rng_state() -> dict:
    np_state = np.random.get_state()
    return {"python": random.getstate(), "torch": torch.get_rng_state(),
            "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def all_rng_states() -> list[dict] | None:
    """Every process's random state, in rank order, on rank 0 (None on the others)."""
    if not distributed():
        return [rng_state()]
    states = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(rng_state(), states, dst=0)
    return states


def on_main(make: Callable[[], T]) -> T:
    """``make()`` on rank 0 alone; every rank gets its result, or raises the same RunFolderError."""
    result = None
    if not distributed() or dist.get_rank() == 0:
        try:
            result = make()
        except RunFolderError as e:
            result = e
    if distributed():
        box = [result]
        dist.broadcast_object_list(box, src=0)
        result = box[0]
    if isinstance(result, RunFolderError):
        raise result
    return result


def default_run_name(dataset: str, model: str) -> str:
    return f"{dataset}-{model}-{time.strftime('%Y%m%d-%H%M%S')}"


# ----------------------------------------------------------------------------------------------
# Ctrl-C / SIGTERM: finish the step, save, stop.

class StopFlag:
    """Ctrl-C / SIGTERM asks to stop (a second Ctrl-C aborts at once).

    ``requested`` is this process's own flag; ``agreed`` is set only from values summed over all
    ranks, so every rank stops at the same step (training) or after the same epoch (evaluation).
    """

    def __init__(self) -> None:
        self.requested = False
        self.agreed = False

    @contextmanager
    def installed(self) -> Iterator["StopFlag"]:
        if threading.current_thread() is not threading.main_thread():  # signals only reach the main thread
            yield self
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum, frame):
            self.requested = True
            signal.signal(signal.SIGINT, signal.default_int_handler)

        for s in previous:
            signal.signal(s, handler)
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
