"""Train and evaluate Max-Former / Max-ResNet with the paper's recipes (hyper-parameters: Table 6).

    python train.py                                        # offline default: digits-dvs, ~3 min on a CPU
    python train.py --config configs/cifar10.yaml --data-dir ~/data
    torchrun --nproc_per_node 8 train.py --config configs/imagenet_10_768_t4.yaml --data-dir ~/imagenet
    python train.py --resume runs/<run>/last.pth           # continue exactly where a run stopped
    python train.py --eval-only --checkpoint best.pth      # ours, or the authors' released weights

Reads top to bottom: flags, distributed set-up, data, model and optimiser, learning-rate schedule,
one training epoch, evaluation, checkpoints, and `main`, which ties them together. The loss is
soft-target cross-entropy (label smoothing, and mixup/cutmix until `--mixup-off-epoch`), the
optimiser AdamW without weight decay on biases and norms, the schedule a per-step cosine with
linear warm-up and a constant cool-down at `--min-lr`.

Every epoch, rank 0 writes `last.pth` (atomically; model, optimiser, scheduler, grad scaler, epoch,
RNG states, best accuracy), `best.pth` when the test top-1 improves, and one row of `log.csv`.
Ctrl-C (or SIGTERM) finishes the current step, saves `last.pth` and exits; `--resume` continues
bit-for-bit on CPU with a fixed seed (mid-epoch too when `--workers 0`).
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import random
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from typing import ContextManager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm import tqdm

from data import DATASETS, DatasetInfo, DatasetNotFoundError, MixupCutmix, build_datasets
from maxformer import create_model, list_models, load_official

CHECKPOINT_FORMAT = "maxformer-train/1"
CSV_COLUMNS = ("epoch", "train_loss", "train_acc1", "test_loss", "test_acc1", "test_acc5", "lr", "seconds")
EXIT_INTERRUPTED = 130


# ----------------------------------------------------------------------------------------------
# Flags. Defaults train the offline default (digits-dvs, max_former_tiny) on a laptop CPU.

class FlagParser(argparse.ArgumentParser):
    """An ArgumentParser whose 'unrecognized arguments' error also lists the valid flags."""

    def error(self, message: str):
        if message.startswith("unrecognized arguments"):
            message += "\nvalid flags: " + " ".join(valid_flags(self))
        super().error(message)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except None: those flags' help says what happens when unset."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help if action.default is None else super()._get_help_string(action)


def build_parser() -> FlagParser:
    p = FlagParser(description=__doc__.split("\n\n")[0], allow_abbrev=False, formatter_class=HelpFormatter)
    p.add_argument("--config", metavar="FILE.yaml",
                   help="YAML file whose keys are these flags without the leading dashes "
                        "(e.g. 'batch-size: 64', 'T: 4'); flags given on the command line override it; "
                        "configs/ holds the paper's settings")

    g = p.add_argument_group("model and data")
    g.add_argument("--model", default="max_former_tiny", choices=list_models(), metavar="NAME",
                   help=f"model to build, one of: {', '.join(list_models())}")
    g.add_argument("--dataset", default="digits-dvs", choices=DATASETS,
                   help="dataset; digits-dvs is built offline from scikit-learn's digits")
    g.add_argument("--data-dir", metavar="DIR", help="folder holding the dataset (default: ./data)")
    g.add_argument("--cache-dir", metavar="DIR", help="folder for cached event frames (default: <data-dir>/cache)")
    g.add_argument("--download", action=argparse.BooleanOptionalAction, default=False,
                   help="download the dataset if it is missing and its licence allows it")
    g.add_argument("--spec", metavar="'key=value ...'",
                   help="architecture overrides for ablations, e.g. 'embed=orig,max,max mixer=id,dwc3,ssa' "
                        "(keys: see maxformer.parse_spec)")
    g.add_argument("-T", type=int, metavar="STEPS",
                   help="time steps; default: the dataset's frame count for event data, else the model's")
    g.add_argument("--neuron", choices=("lif", "if", "relu"),
                   help="neuron kind (relu: the non-spiking twin); default: the model's")
    g.add_argument("--neuron-backend", help="neuron implementation passed to the model; default: the model's")
    g.add_argument("--label-order", choices=("ibm", "spikingjelly"), default="ibm",
                   help="DVS128 Gesture class numbering; spikingjelly matches the authors' released checkpoint")
    g.add_argument("--augment", action=argparse.BooleanOptionalAction, default=False,
                   help="the dataset's training augmentation (flips, crops, ...; see data.py)")
    g.add_argument("--limit-train", type=int, metavar="N",
                   help="train on a fixed random subset of N training samples (quick checks, tests)")
    g.add_argument("--limit-test", type=int, metavar="N",
                   help="evaluate on a fixed random subset of N test samples (quick checks, tests)")
    g.add_argument("--workers", type=int, default=0, help="DataLoader worker processes per rank")

    g = p.add_argument_group("optimisation (AdamW)")
    g.add_argument("--epochs", type=int, default=10, help="epochs to train, cool-down included")
    g.add_argument("--batch-size", type=int, default=32, help="batch size per process")
    g.add_argument("--lr", type=float, default=5e-3, help="peak learning rate")
    g.add_argument("--lr-base", type=float, metavar="LR",
                   help="if set, the peak learning rate is LR x global batch / 256 (the paper's ImageNet "
                        "rule) and --lr is not used")
    g.add_argument("--weight-decay", type=float, default=0.01,
                   help="AdamW weight decay (not applied to biases and norm parameters)")
    g.add_argument("--clip-grad", type=float, metavar="NORM", help="clip the gradient norm to NORM (default: off)")

    g = p.add_argument_group("learning-rate schedule (per step)")
    g.add_argument("--warmup-epochs", type=float, default=0.3,
                   help="linear warm-up from --warmup-lr to the peak over this many epochs (may be fractional)")
    g.add_argument("--warmup-lr", type=float, default=1e-6, help="learning rate at the first step")
    g.add_argument("--min-lr", type=float, default=1e-5, help="learning rate at the end of the cosine")
    g.add_argument("--cooldown-epochs", type=int, default=0,
                   help="last epochs held at --min-lr after the cosine ends")

    g = p.add_argument_group("regularisation")
    g.add_argument("--smoothing", type=float, default=0.1, help="label smoothing")
    g.add_argument("--mixup", type=float, default=0.0, help="mixup alpha (0: off)")
    g.add_argument("--cutmix", type=float, default=0.0, help="cutmix alpha (0: off)")
    g.add_argument("--mixup-prob", type=float, default=1.0, help="probability of mixing a batch")
    g.add_argument("--mixup-switch-prob", type=float, default=0.5,
                   help="probability of cutmix instead of mixup when both are on")
    g.add_argument("--mixup-off-epoch", type=int, default=0,
                   help="switch mixup/cutmix off after this many epochs (0: never)")

    g = p.add_argument_group("run")
    g.add_argument("--output", metavar="DIR", help="run folder for checkpoints and log.csv "
                                    "(default: runs/<dataset>-<model>-<time>, or the --resume file's folder)")
    g.add_argument("--resume", metavar="PATH", help="continue training from one of our last.pth/best.pth")
    g.add_argument("--eval-only", action="store_true", help="evaluate --checkpoint on the test set and exit")
    g.add_argument("--checkpoint", metavar="PATH",
                   help="weights for --eval-only: one of our checkpoints or the authors' released file")
    g.add_argument("--allow-pickle", action="store_true",
                   help="let --checkpoint unpickle arbitrary objects (some released files need it); "
                        "only for files you trust")
    g.add_argument("--seed", type=int, default=0, help="random seed (rank r uses seed + r)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CUDA if available, else CPU")
    g.add_argument("--precision", choices=("auto", "bf16", "fp16", "fp32"), default="auto",
                   help="autocast dtype on CUDA (fp16 uses a grad scaler); auto: bf16 where supported, "
                        "else fp16; always fp32 on CPU")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="torch.compile the model")
    g.add_argument("--checkpoint-stages", action=argparse.BooleanOptionalAction, default=False,
                   help="recompute each stage's activations in the backward pass to save memory")
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    config = pre.parse_known_args(argv)[0].config
    file_argv = config_to_argv(config, parser) if config else []
    args = parser.parse_args(file_argv + list(argv if argv is not None else sys.argv[1:]))
    if args.eval_only and not args.checkpoint:
        parser.error("--eval-only needs --checkpoint PATH (one of our checkpoints or a released one)")
    if args.checkpoint and not args.eval_only:
        parser.error("--checkpoint is read only with --eval-only; to continue training use --resume PATH")
    if args.eval_only and args.resume:
        parser.error("--eval-only evaluates --checkpoint; drop --resume")
    return args


# ----------------------------------------------------------------------------------------------
# Device and distributed set-up (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK).

@dataclass
class Context:
    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_flag: str) -> Context:
    """Pick the device and, under torchrun, join the process group (NCCL on GPUs, gloo on CPU)."""
    use_cuda = device_flag == "cuda" or (device_flag == "auto" and torch.cuda.is_available())
    if device_flag == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible; use --device cpu")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    return Context(rank, world, device)


def all_sum(t: torch.Tensor, ctx: Context) -> torch.Tensor:
    if ctx.world > 1:
        dist.all_reduce(t)
    return t


# ----------------------------------------------------------------------------------------------
# Data.

def fixed_subset(dataset: Dataset, limit: int | None) -> Dataset:
    """The first `limit` samples of a fixed (seed 0) permutation, so every run sees the same ones."""
    if limit is None or limit >= len(dataset):
        return dataset
    return Subset(dataset, torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:limit].tolist())


def build_data(args: argparse.Namespace) -> tuple[Dataset, Dataset, DatasetInfo]:
    kwargs = {} if args.T is None else {"T": args.T}
    try:
        train_set, test_set, info = build_datasets(args.dataset, data_dir=args.data_dir, download=args.download,
                                                   augment=args.augment, cache_dir=args.cache_dir,
                                                   label_order=args.label_order, **kwargs)
    except DatasetNotFoundError as e:
        raise SystemExit(str(e)) from None
    return fixed_subset(train_set, args.limit_train), fixed_subset(test_set, args.limit_test), info


def make_loader(dataset: Dataset, indices: list[int], args: argparse.Namespace, ctx: Context, train: bool,
                seed: int = 0) -> DataLoader:
    """Batches over the given sample indices, in order. Its own generator (seeding the workers, if
    any) leaves the global RNG alone, so a resumed run draws the same random numbers."""
    return DataLoader(dataset, batch_size=args.batch_size, sampler=indices, drop_last=train,
                      num_workers=args.workers, pin_memory=ctx.device.type == "cuda",
                      generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------
# Model, optimiser, schedule.

def build_model(args: argparse.Namespace, info: DatasetInfo) -> nn.Module:
    """The named model sized for the dataset; T from -T, else the event data's frame count."""
    overrides = info.model_overrides()
    for key, value in (("T", args.T), ("neuron", args.neuron), ("neuron_backend", args.neuron_backend)):
        if value is not None:
            overrides[key] = value
    model = create_model(args.model, spec=args.spec, **overrides)
    model.checkpoint_stages = args.checkpoint_stages
    return model


def build_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; biases and norm parameters (1-D tensors) get no weight decay."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def lr_at(step: int, peak: float, args: argparse.Namespace, steps_per_epoch: int) -> float:
    """Linear warm-up, cosine from the peak down to --min-lr, then --cooldown-epochs at --min-lr."""
    warmup = round(args.warmup_epochs * steps_per_epoch)
    decay_end = max(warmup + 1, (args.epochs - args.cooldown_epochs) * steps_per_epoch)
    if step < warmup:
        return args.warmup_lr + (peak - args.warmup_lr) * step / warmup
    if step >= decay_end:
        return args.min_lr
    progress = (step - warmup) / (decay_end - warmup)
    return args.min_lr + 0.5 * (peak - args.min_lr) * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, peak: float, args: argparse.Namespace, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_at(step, peak, args, steps_per_epoch) / peak)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


# ----------------------------------------------------------------------------------------------
# Loss, one epoch of training, evaluation.

def smooth_one_hot(y: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    return F.one_hot(y, num_classes).float() * (1 - smoothing) + smoothing / num_classes


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets [B, classes] (smoothed and/or mixed labels)."""
    return torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; raised before the step updates any weight."""


class StopFlag:
    """Ctrl-C / SIGTERM asks to stop (a second Ctrl-C aborts at once).

    ``requested`` is this process's own flag; ``agreed`` is set only from values summed over all
    ranks, so every rank stops at the same step (training) or after the same epoch (evaluation).
    """

    def __init__(self) -> None:
        self.requested = False
        self.agreed = False

    @contextmanager
    def installed(self):
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


@dataclass
class Run:
    """The training state that the loop shares between functions and saves in checkpoints."""
    model: nn.Module              # what runs forward: maybe compiled, maybe wrapped in DDP
    net: nn.Module                # the bare model, whose state is saved
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    mixup: MixupCutmix | None
    num_classes: int
    dtype: torch.dtype | None     # autocast dtype on CUDA; None: plain fp32
    epoch: int = 0                # epochs completed
    step: int = 0                 # steps completed within the current epoch
    best_acc1: float = -1.0
    best_epoch: int = 0


def autocast(dtype: torch.dtype | None) -> ContextManager:
    return torch.autocast("cuda", dtype=dtype) if dtype is not None else nullcontext()


def train_one_epoch(run: Run, loader: DataLoader, args: argparse.Namespace, ctx: Context, stop: StopFlag, steps: int) -> dict:
    """Train from step `run.step` to the end of epoch `run.epoch`; returns mean loss and accuracy."""
    run.model.train()
    use_mixup = run.mixup is not None and (args.mixup_off_epoch == 0 or run.epoch < args.mixup_off_epoch)
    totals = np.zeros(3)  # loss x samples, correct, samples (summed over ranks)
    bar = tqdm(loader, desc=f"epoch {run.epoch + 1}/{args.epochs}", total=steps, initial=run.step,
               disable=not ctx.is_main, dynamic_ncols=True)
    tick = time.perf_counter()
    for x, y in bar:
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
        x, targets = run.mixup(x, y) if use_mixup else (x, smooth_one_hot(y, run.num_classes, args.smoothing))
        with autocast(run.dtype):
            logits = run.model(x)
        loss = soft_cross_entropy(logits, targets)
        correct = (logits.argmax(-1) == targets.argmax(-1)).sum()
        # One all-reduce per step: global loss and accuracy, and whether any rank was asked to stop.
        stats = torch.stack([loss.detach() * len(y), correct.float(), torch.tensor(float(len(y)), device=ctx.device),
                             torch.tensor(float(stop.requested), device=ctx.device)])
        loss_sum, n_correct, n, stopping = all_sum(stats, ctx).tolist()
        if not math.isfinite(loss_sum):
            raise NonFiniteLoss(f"the loss is {loss_sum / n} at epoch {run.epoch + 1}, step {run.step + 1} "
                                f"(of {steps})")
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        if args.clip_grad is not None:
            run.scaler.unscale_(run.optimizer)
            nn.utils.clip_grad_norm_(run.net.parameters(), args.clip_grad)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.scheduler.step()
        run.step += 1
        totals += (loss_sum, n_correct, n)
        now = time.perf_counter()
        bar.set_postfix(loss=f"{totals[0] / totals[2]:.4f}", acc=f"{100 * totals[1] / totals[2]:.2f}",
                        img_s=f"{n / (now - tick):.0f}", lr=f"{run.optimizer.param_groups[0]['lr']:.2e}",
                        refresh=False)
        tick = now
        if stopping:
            stop.agreed = True
            break
    bar.close()
    n = totals[2] or math.nan  # no steps left when resuming an epoch interrupted during its evaluation
    return {"train_loss": totals[0] / n, "train_acc1": 100 * totals[1] / n}


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, ctx: Context, dtype: torch.dtype | None, stop: StopFlag) -> dict:
    """Test loss (plain cross-entropy), top-1 and top-5 accuracy in %, over all ranks' shards."""
    model.eval()
    totals = torch.zeros(5, device=ctx.device, dtype=torch.float64)  # loss x samples, top-1, top-5, samples, stop
    for x, y in tqdm(loader, desc="test", leave=False, disable=not ctx.is_main, dynamic_ncols=True):
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
        with autocast(dtype):
            logits = model(x).float()
        hits = logits.topk(min(5, logits.shape[-1]), dim=-1).indices == y[:, None]
        totals[0] += F.cross_entropy(logits, y, reduction="sum")
        totals[1] += hits[:, 0].sum()
        totals[2] += hits.sum()
        totals[3] += len(y)
    totals[4] = stop.requested
    loss, top1, top5, n, stopping = all_sum(totals, ctx).tolist()
    stop.agreed = stop.agreed or stopping > 0
    n = n or math.nan
    return {"test_loss": loss / n, "test_acc1": 100 * top1 / n, "test_acc5": 100 * top5 / n}


# ----------------------------------------------------------------------------------------------
# Checkpoints: written atomically by rank 0, loadable with weights_only=True.

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


def save_checkpoint(run: Run, args: argparse.Namespace, path: Path) -> None:
    state = {"format": CHECKPOINT_FORMAT, "model": run.net.state_dict(), "optimizer": run.optimizer.state_dict(),
             "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(),
             "epoch": run.epoch, "step": run.step, "best_acc1": run.best_acc1, "best_epoch": run.best_epoch,
             "rng": rng_state(), "args": vars(args)}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str) -> dict:
    """One of our checkpoints, or SystemExit naming the problem."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SystemExit(f"checkpoint not found: {path}") from None
    except Exception as e:  # the unpickler's errors have no common base class
        raise SystemExit(f"{path} is not a checkpoint written by train.py ({type(e).__name__}: {e})") from None
    if not (isinstance(ckpt, dict) and ckpt.get("format") == CHECKPOINT_FORMAT):
        raise SystemExit(f"{path} is not a checkpoint written by train.py; for the authors' released "
                         "weights use --eval-only --checkpoint PATH")
    return ckpt


def load_weights(net: nn.Module, path: str, allow_pickle: bool) -> None:
    """Our checkpoints by key; anything else through maxformer.load_official (the authors' layouts)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SystemExit(f"checkpoint not found: {path}") from None
    except Exception:  # a pickled released file: load_official decides, honouring --allow-pickle
        ckpt = None
    try:
        if isinstance(ckpt, dict) and ckpt.get("format") == CHECKPOINT_FORMAT:
            load_own_state(net, ckpt, path)
        else:
            load_official(net, path, allow_pickle=allow_pickle)
    except ValueError as e:  # maxformer.CheckpointMismatchError, or a pickled file without --allow-pickle
        raise SystemExit(f"cannot load {path}: {e}") from None


def load_own_state(net: nn.Module, ckpt: dict, path: str) -> None:
    try:
        net.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        trained = " ".join(f"--{k} {ckpt['args'][k]}" for k in ("model", "dataset", "spec") if ckpt["args"].get(k))
        raise SystemExit(f"{e}\n{path} does not fit this model; it was trained with {trained}") from None


def resume(run: Run, path: str) -> None:
    ckpt = read_checkpoint(path)
    load_own_state(run.net, ckpt, path)
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    run.scaler.load_state_dict(ckpt["scaler"])
    run.epoch, run.step = ckpt["epoch"], ckpt["step"]
    run.best_acc1, run.best_epoch = ckpt["best_acc1"], ckpt["best_epoch"]
    set_rng_state(ckpt["rng"])


def append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


# ----------------------------------------------------------------------------------------------
# Putting it together.

def output_dir(args: argparse.Namespace) -> Path:
    if args.output:
        return Path(args.output)
    if args.resume:
        return Path(args.resume).parent
    return Path("runs") / f"{args.dataset}-{args.model}-{time.strftime('%Y%m%d-%H%M%S')}"


def stopped(out: Path, run: Run, ctx: Context) -> None:
    """After Ctrl-C / SIGTERM: say where training stopped and how to continue; exit with 130."""
    if ctx.is_main:
        where = f"epoch {run.epoch + 1}, step {run.step}" if run.step else f"the end of epoch {run.epoch}"
        print(f"\nstopped at {where}; saved {out / 'last.pth'}. Continue with --resume {out / 'last.pth'}",
              flush=True)
    raise SystemExit(EXIT_INTERRUPTED)


def finish_epoch(run: Run, args: argparse.Namespace, out: Path, ctx: Context, metrics: dict, started: float) -> None:
    """Count the epoch, track the best top-1, and (rank 0) save checkpoints and a CSV row."""
    run.epoch, run.step = run.epoch + 1, 0
    improved = metrics["test_acc1"] > run.best_acc1
    if improved:
        run.best_acc1, run.best_epoch = metrics["test_acc1"], run.epoch
    if not ctx.is_main:
        return
    save_checkpoint(run, args, out / "last.pth")
    if improved:
        save_checkpoint(run, args, out / "best.pth")
    row = {"epoch": run.epoch, **metrics, "lr": run.optimizer.param_groups[0]["lr"],
           "seconds": time.perf_counter() - started}
    append_csv(out / "log.csv", row)
    tqdm.write(f"epoch {run.epoch}: train loss {row['train_loss']:.4f} acc {row['train_acc1']:.2f}% | "
               f"test loss {row['test_loss']:.4f} top-1 {row['test_acc1']:.2f}% top-5 {row['test_acc5']:.2f}% | "
               f"{row['seconds']:.1f}s")


def train(args: argparse.Namespace, ctx: Context, net: nn.Module, model: nn.Module, train_set: Dataset,
          test_loader: DataLoader, info: DatasetInfo,
          dtype: torch.dtype | None) -> dict:
    """The epoch loop; returns the best-over-epochs and the final test top-1."""
    sampler = DistributedSampler(train_set, num_replicas=ctx.world, rank=ctx.rank, shuffle=True, seed=args.seed,
                                 drop_last=True)
    steps = len(sampler) // args.batch_size
    if steps == 0:
        raise SystemExit(f"the training set has {len(sampler)} samples per process, fewer than --batch-size "
                         f"{args.batch_size}; lower --batch-size")
    peak = args.lr_base * args.batch_size * ctx.world / 256 if args.lr_base is not None else args.lr
    optimizer = build_optimizer(net, peak, args.weight_decay)
    mixup = (MixupCutmix(info.num_classes, args.mixup, args.cutmix, args.mixup_prob, args.mixup_switch_prob,
                         args.smoothing) if args.mixup > 0 or args.cutmix > 0 else None)
    run = Run(model, net, optimizer, build_scheduler(optimizer, peak, args, steps),
              torch.amp.GradScaler("cuda", enabled=dtype == torch.float16), mixup, info.num_classes, dtype)
    if args.resume:
        resume(run, args.resume)
    out = output_dir(args)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        print(f"{args.model} on {args.dataset} ({len(train_set)} train samples), "
              f"{sum(p.numel() for p in net.parameters()):,} parameters, {ctx.world} x {ctx.device.type}, "
              f"peak lr {peak:.3g}; writing to {out}", flush=True)

    stop, metrics = StopFlag(), {}
    with stop.installed():
        while run.epoch < args.epochs:
            started = time.perf_counter()
            sampler.set_epoch(run.epoch)
            worker_seed = int(np.random.SeedSequence([args.seed, ctx.rank, run.epoch]).generate_state(1)[0])
            loader = make_loader(train_set, list(sampler)[run.step * args.batch_size:], args, ctx, True, worker_seed)
            try:
                train_metrics = train_one_epoch(run, loader, args, ctx, stop, steps)
            except NonFiniteLoss as e:
                kept = (f"the last good checkpoint {out / 'last.pth'} is kept" if (out / "last.pth").exists()
                        else "no epoch had finished, so there is no checkpoint")
                raise SystemExit(f"{e}; stopped: {kept}. Try a lower --lr or --clip-grad.") from None
            if stop.agreed:  # mid-epoch: save the step reached, skip the evaluation
                if ctx.is_main:
                    save_checkpoint(run, args, out / "last.pth")
                stopped(out, run, ctx)
            metrics = {**train_metrics, **evaluate(model, test_loader, ctx, dtype, stop)}
            finish_epoch(run, args, out, ctx, metrics, started)
            if stop.agreed and run.epoch < args.epochs:
                stopped(out, run, ctx)

    summary = {"best_acc1": run.best_acc1, "best_epoch": run.best_epoch,
               "final_acc1": metrics.get("test_acc1", math.nan), "output": str(out)}
    if ctx.is_main:
        print(f"best test top-1 over epochs (what the paper reports): {summary['best_acc1']:.2f}% "
              f"at epoch {summary['best_epoch']}; final test top-1: {summary['final_acc1']:.2f}%")
    return summary


def main(argv: list[str] | None = None) -> dict:
    """Train, or with --eval-only evaluate; returns the metrics. Bad input exits with a message."""
    args = parse_args(argv)
    ctx = setup(args.device)
    try:
        for seed_fn in (random.seed, np.random.seed, torch.manual_seed):
            seed_fn(args.seed + ctx.rank)
        train_set, test_set, info = build_data(args)
        net = build_model(args, info).to(ctx.device)
        if args.eval_only:
            load_weights(net, args.checkpoint, args.allow_pickle)
        model = torch.compile(net) if args.compile else net
        if ctx.world > 1:
            model = DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
        dtype = autocast_dtype(args.precision, ctx.device)
        test_loader = make_loader(test_set, list(range(ctx.rank, len(test_set), ctx.world)), args, ctx, False)
        if args.eval_only:
            metrics = evaluate(model, test_loader, ctx, dtype, StopFlag())
            if ctx.is_main:
                print(f"{args.checkpoint}: test top-1 {metrics['test_acc1']:.2f}%, top-5 {metrics['test_acc5']:.2f}%, "
                      f"loss {metrics['test_loss']:.4f} on {len(test_set)} samples")
        else:
            metrics = train(args, ctx, net, model, train_set, test_loader, info, dtype)
        if ctx.world > 1:  # no rank tears the group down while another still writes (gloo aborts then)
            dist.barrier()
        return metrics
    finally:
        if ctx.world > 1:
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
