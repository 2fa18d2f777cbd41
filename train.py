"""Train and evaluate Max-Former / Max-ResNet with the paper's recipes (hyper-parameters: Table 6).

    python train.py                                        # offline default: digits-dvs, ~3 min on a CPU
    python train.py --config configs/cifar10.yaml --data-dir ~/data
    python train.py --config configs/cifar10.yaml --print-recipe --steps-per-epoch 390
    torchrun --nproc_per_node 8 train.py --config configs/imagenet_10_768_t4.yaml --data-dir ~/imagenet
    python train.py --resume runs/<run>/last.pth           # continue exactly where a run stopped
    python train.py --eval-only --checkpoint best.pth      # ours; the authors' files also need --model

Reads top to bottom: the settings (`Config`, from flags and YAML), distributed set-up, data, model
and optimiser (the learning-rate schedules are recipe.py's), one training epoch, evaluation, and
`main`, which does them in that order. The loss is soft-target cross-entropy (label smoothing, and mixup/cutmix until
`--mixup-off-epoch`), the optimiser AdamW without weight decay on biases and norms.

A run folder (checkpoints.py) holds config.yaml, recipe.json, last.pth and best.pth (each with the
model's config and the run's resolved settings), log.csv, TensorBoard scalars and curves.png. Ctrl-C
(or SIGTERM) finishes the current step, saves last.pth and exits; `--resume` restores the run's
settings and continues bit-for-bit on CPU (mid-epoch too when `--workers 0`). A NaN or infinity in
the loss, gradient norm, weights or BatchNorm statistics stops the run; no checkpoint holding one
is ever written.
"""
from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import random
import sys
import time
from contextlib import ExitStack, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ContextManager, NoReturn

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from checkpoints import (CSV_COLUMNS, CheckpointError, CheckpointMismatchError, NonFiniteError, RunFolderError, StopFlag,
                         all_rng_states, default_run_name, is_ours, load_official, on_main, open_run_folder,
                         read_checkpoint, save_checkpoint, scalar_writer, set_rng_state, what_went_nonfinite,
                         write_curves, write_log, write_text)
from settings import (FlagParser, Roles, SettingsError, count, flag_parser, non_negative, parse_flags, positive,
                      positive_int, probability, same_model, setting, settings_from, to_yaml)
from augment import EVENT_CUTMIX, POLICIES, MixupCutmix, erase_batch, smooth_one_hot
from data import DATA_ERRORS, DATASETS, DatasetInfo, build_datasets, check_data_dir, seeded_subset
from zoo import create_model, list_models, model_config, parse_spec
from neurons import BACKENDS, Neuron
from recipe import SCHEDULES, config_steps_per_epoch, lr_at, peak_lr, resolve_recipe

EXIT_INTERRUPTED = 130


# ----------------------------------------------------------------------------------------------
# Settings: one typed record, read from flags and a YAML file. Defaults train the offline default
# (digits-dvs, max_former_tiny) on a laptop CPU. Flag names are the field names with dashes.

def model_name(text: str) -> str:
    if text not in list_models():
        close = difflib.get_close_matches(text, list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise argparse.ArgumentTypeError(f"unknown model {text!r}{hint} (all names: train.py --help)")
    return text


def spec_string(text: str) -> str:
    try:
        parse_spec(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


@dataclass(frozen=True)
class Config:
    config: str | None = setting(None, "YAML file whose keys are these flags without the leading dashes "
                                 "(e.g. 'batch-size: 64', 'T: 4'); flags on the command line override it; "
                                 "configs/ holds the paper's settings", metavar="FILE.yaml")
    # model and data
    model: str = setting("max_former_tiny", f"model to build, one of: {', '.join(list_models())}",
                         type=model_name, metavar="NAME")
    dataset: str = setting("digits-dvs", "dataset; digits-dvs is built offline from scikit-learn's digits",
                           choices=DATASETS)
    data_dir: str | None = setting(None, "folder holding the dataset (default: ./data)", metavar="DIR")
    cache_dir: str | None = setting(None, "folder for cached event frames (default: <data-dir>/cache)",
                                    metavar="DIR")
    download: bool = setting(False, "download the dataset if it is missing and its licence allows it")
    spec: str | None = setting(None, "architecture overrides for ablations, e.g. 'embed=orig,max,max "
                               "mixer=id,dwc3,ssa' (keys: see zoo.parse_spec)", type=spec_string,
                               metavar="'key=value ...'")
    T: int | None = setting(None, "time steps; default: the dataset's frame count for event data, else the "
                            "model's", names=("-T",), type=positive_int, metavar="STEPS")
    neuron: str | None = setting(None, "neuron kind (relu: the non-spiking twin); default: the model's",
                                 choices=("lif", "if", "relu"))
    neuron_backend: str | None = setting(None, "neuron implementation (same function, different speed); "
                                         "default: the model's", choices=BACKENDS)
    label_order: str = setting("ibm", "DVS128 Gesture class numbering; spikingjelly matches the authors' "
                               "released checkpoint", choices=("ibm", "spikingjelly"))
    augment: bool = setting(False, "the dataset's training augmentation (flips, crops, ...; see data.py)")
    aug_policy: str | None = setting(None, "RandAugment policy of the training images (with --augment); "
                                     "default: the one the authors run on that dataset", choices=tuple(POLICIES))
    limit_train: int | None = setting(None, "train on a fixed random subset of N training samples (quick "
                                      "checks, tests)", type=positive_int, metavar="N")
    limit_test: int | None = setting(None, "evaluate on a fixed random subset of N test samples (quick checks, "
                                     "tests)", type=positive_int, metavar="N")
    workers: int = setting(0, "DataLoader worker processes per rank", type=count)
    # optimisation (AdamW)
    epochs: int = setting(10, "epochs to train, cool-down included; on --resume, a larger value extends the "
                          "run (the schedule is recomputed over the new total)", type=positive_int)
    batch_size: int = setting(32, "batch size per process", type=positive_int)
    lr: float = setting(5e-3, "peak learning rate", type=positive)
    lr_base: float | None = setting(None, "if set, the peak learning rate is LR x global batch / 256 (the "
                                    "paper's ImageNet rule) and --lr is not used", type=positive, metavar="LR")
    weight_decay: float = setting(0.01, "AdamW weight decay (not applied to biases and norm parameters)",
                                  type=non_negative)
    clip_grad: float | None = setting(None, "clip the gradient norm to NORM (default: off)", type=positive,
                                      metavar="NORM")
    # learning-rate schedule
    schedule: str = setting("step-cosine", "learning-rate schedule (recipe.py): epoch-cosine (timm, per epoch), "
                            "iter-cosine (per iteration), step-cosine (per step)", choices=SCHEDULES)
    warmup_epochs: float = setting(0.3, "linear warm-up from --warmup-lr to the peak over this many epochs "
                                   "(may be fractional)", type=non_negative)
    warmup_lr: float = setting(1e-6, "learning rate at the first step", type=non_negative)
    min_lr: float = setting(1e-5, "learning rate at the end of the cosine", type=non_negative)
    cooldown_epochs: int = setting(0, "last epochs held at --min-lr after the cosine ends", type=count)
    steps_per_epoch: int | None = setting(None, "steps per epoch for --print-recipe when the data is not on "
                                          "disk", type=positive_int, metavar="N")
    # regularisation
    smoothing: float = setting(0.1, "label smoothing", type=probability)
    mixup: float = setting(0.0, "mixup alpha (0: off)", type=non_negative)
    cutmix: float = setting(0.0, "cutmix alpha (0: off)", type=non_negative)
    mixup_prob: float = setting(1.0, "probability of mixing a batch", type=probability)
    mixup_switch_prob: float = setting(0.5, "probability of cutmix instead of mixup when both are on",
                                       type=probability)
    mixup_off_epoch: int = setting(0, "switch mixup/cutmix off after this many epochs (0: never)", type=count)
    event_cutmix: str = setting("spatial", "CutMix on event frames [N, T, C, H, W]: spatial (one box in every "
                                "frame, the sound choice) or authors (their behaviour; augment.py)",
                                choices=EVENT_CUTMIX)
    random_erasing: float = setting(0.0, "with --augment: probability of erasing a box of each sample (0: off); "
                                    "CIFAR: after mixing, filled with 0; ImageNet: before mixing, filled with "
                                    "noise", type=probability)
    # run
    output: str | None = setting(None, "run folder (default: a new runs/<dataset>-<model>-<time>, or the "
                                 "--resume file's folder)", names=("--output", "--out"), metavar="DIR")
    overwrite: bool = setting(False, "let a new run replace the run files already in --output", switch=True)
    resume: str | None = setting(None, "continue one of our last.pth/best.pth with its recorded settings",
                                 metavar="PATH")
    override: bool = setting(False, "with --resume or --eval-only: let flags change the checkpoint's recorded "
                             "settings", switch=True)
    eval_only: bool = setting(False, "evaluate --checkpoint on the test set and exit", switch=True)
    checkpoint: str | None = setting(None, "weights for --eval-only: one of our checkpoints (its model is "
                                     "rebuilt from it) or the authors' released file (name it with --model)",
                                     metavar="PATH")
    allow_pickle: bool = setting(False, "let --checkpoint unpickle arbitrary objects (some released files need "
                                 "it); only for files you trust", switch=True)
    print_recipe: bool = setting(False, "print the resolved recipe as JSON and exit, without reading data",
                                 switch=True)
    seed: int = setting(0, "random seed (rank r uses seed + r)", type=count)
    device: str = setting("auto", "auto: CUDA if available, else CPU", choices=("auto", "cpu", "cuda"))
    precision: str = setting("auto", "autocast dtype on CUDA (fp16 uses a dynamic grad scaler); auto: bf16 "
                             "where supported, else fp16; always fp32 on CPU", choices=("auto", "bf16", "fp16", "fp32"))
    eval_precision: str = setting("same", "evaluation dtype: same as training, or fp32",
                                  choices=("same", "fp32"))
    deterministic: bool = setting(False, "cuDNN deterministic algorithms, benchmark off")
    compile: bool = setting(False, "torch.compile the model")
    checkpoint_stages: bool = setting(False, "recompute each stage's activations in the backward pass to "
                                      "save memory")


GROUPS = {"model": "model and data", "epochs": "optimisation (AdamW)", "schedule": "learning-rate schedule",
          "smoothing": "regularisation", "output": "run"}
ROLES = Roles(run_only=frozenset({"config", "output", "overwrite", "resume", "override", "eval_only", "checkpoint",
                                  "allow_pickle", "print_recipe", "steps_per_epoch"}),
              may_change=frozenset({"epochs", "workers", "device", "data_dir", "cache_dir", "download", "compile",
                                    "checkpoint_stages", "neuron_backend"}),
              model=("model", "spec", "T", "neuron", "dataset", "label_order"))


def build_parser(defaults: bool = True) -> FlagParser:
    return flag_parser(Config, "train.py", __doc__.split("\n\n")[0], GROUPS, defaults)


def parse_args(argv: list[str] | None = None) -> Config:
    """The settings from --config and the command line; bad values exit with status 2 and a message."""
    parser = build_parser()
    cfg = Config(**parse_flags(parser, argv))
    if cfg.eval_only and not cfg.checkpoint:
        parser.error("--eval-only needs --checkpoint PATH (one of our checkpoints or a released one)")
    if cfg.checkpoint and not cfg.eval_only:
        parser.error("--checkpoint is read only with --eval-only; to continue training use --resume PATH")
    if cfg.eval_only and cfg.resume:
        parser.error("--eval-only evaluates --checkpoint; drop --resume")
    if cfg.cooldown_epochs >= cfg.epochs:
        parser.error(f"--cooldown-epochs {cfg.cooldown_epochs} leaves no epoch of --epochs {cfg.epochs} to train")
    return cfg


def given_settings(argv: list[str] | None) -> frozenset[str]:
    """The settings set explicitly, on the command line or in the --config file."""
    return frozenset(parse_flags(build_parser(defaults=False), argv))


def fail(message: str) -> NoReturn:
    """Bad input: one message, exit status 2 (as argparse does)."""
    print(f"train.py: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


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
        fail("--device cuda: no CUDA device is visible; use --device cpu")
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
    """A fixed (seed 0) random subset of `limit` samples, so every run sees the same ones."""
    return dataset if limit is None or limit >= len(dataset) else seeded_subset(dataset, limit, 0)


def build_data(cfg: Config) -> tuple[Dataset, Dataset, DatasetInfo]:
    kwargs = {} if cfg.T is None else {"T": cfg.T}
    train_set, test_set, info = build_datasets(cfg.dataset, data_dir=cfg.data_dir, download=cfg.download,
                                               augment=cfg.augment, cache_dir=cfg.cache_dir,
                                               label_order=cfg.label_order, aug_policy=cfg.aug_policy,
                                               imagenet_erasing=cfg.random_erasing, **kwargs)
    return fixed_subset(train_set, cfg.limit_train), fixed_subset(test_set, cfg.limit_test), info


def make_loader(dataset: Dataset, indices: list[int], cfg: Config, ctx: Context, train: bool,
                seed: int = 0) -> DataLoader:
    """Batches over the given sample indices, in order. Its own generator (seeding the workers, if
    any) leaves the global RNG alone, so a resumed run draws the same random numbers."""
    return DataLoader(dataset, batch_size=cfg.batch_size, sampler=indices, drop_last=train,
                      num_workers=cfg.workers, pin_memory=ctx.device.type == "cuda",
                      generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------
# Model, optimiser, schedule.

def model_record(cfg: Config, info: DatasetInfo | None) -> dict:
    """What rebuilds the model: ``create_model(r["name"], spec=r["spec"], **r["overrides"])``;
    sized for the data (``info``), T from -T, else the event data's frame count."""
    overrides = info.model_overrides() if info else {}
    for key, value in (("T", cfg.T), ("neuron", cfg.neuron), ("neuron_backend", cfg.neuron_backend)):
        if value is not None:
            overrides[key] = value
    return {"name": cfg.model, "spec": cfg.spec, "overrides": overrides}


def build_model(record: dict) -> nn.Module:
    return create_model(record["name"], spec=record["spec"], **record["overrides"])


def checked_model_size(cfg: Config) -> int:
    """Build the model without memory ('meta' device) to reject a bad spec or override before any
    data is read; returns its parameter count."""
    try:
        with torch.device("meta"):
            net = build_model(model_record(cfg, None))
    except ValueError as e:
        fail(f"cannot build {cfg.model}: {e}")
    return sum(p.numel() for p in net.parameters())


def build_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; biases and norm parameters (1-D tensors) get no weight decay."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(dtype: torch.dtype | None) -> ContextManager:
    return torch.autocast("cuda", dtype=dtype) if dtype is not None else nullcontext()


# ----------------------------------------------------------------------------------------------
# Loss, stopping, one epoch of training, evaluation.

def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets [B, classes] (smoothed and/or mixed labels)."""
    return torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


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
    erasing: float                # random-erasing probability of each mixed sample (CIFAR)
    epoch: int = 0                # epochs completed
    step: int = 0                 # steps completed within the current epoch
    best_acc1: float = -1.0
    best_epoch: int = 0
    history: list[dict] = field(default_factory=list)  # one log.csv row per completed epoch


def train_one_epoch(run: Run, loader: DataLoader, cfg: Config, ctx: Context, stop: StopFlag, steps: int) -> dict:
    """Train from step `run.step` to the end of epoch `run.epoch`; returns mean loss and accuracy."""
    run.model.train()
    use_mixup = run.mixup is not None and (cfg.mixup_off_epoch == 0 or run.epoch < cfg.mixup_off_epoch)
    params = [p for p in run.net.parameters() if p.requires_grad]
    state = [t for t in (*run.net.parameters(), *run.net.buffers()) if t.is_floating_point()]

    def scalar(value: float) -> torch.Tensor:
        return torch.as_tensor(value, device=ctx.device, dtype=torch.float64)

    totals = np.zeros(3)  # loss x samples, correct, samples (summed over ranks)
    bar = tqdm(loader, desc=f"epoch {run.epoch + 1}/{cfg.epochs}", total=steps, initial=run.step,
               disable=not (ctx.is_main and sys.stderr.isatty()), dynamic_ncols=True)
    tick = time.perf_counter()
    for x, y in bar:
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
        x, targets = run.mixup(x, y) if use_mixup else (x, smooth_one_hot(y, run.num_classes, cfg.smoothing))
        if run.erasing > 0:  # the authors' CIFAR recipe: erasing after mixing (docs/reference/recipes.md)
            x = erase_batch(x, run.erasing)
        with autocast(run.dtype):
            logits = run.model(x)
        loss = soft_cross_entropy(logits, targets)
        correct = (logits.argmax(-1) == targets.argmax(-1)).sum()
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.unscale_(run.optimizer)
        grads = [p.grad for p in params if p.grad is not None]
        norm = (nn.utils.clip_grad_norm_(params, cfg.clip_grad) if cfg.clip_grad is not None
                else nn.utils.get_total_norm(grads))
        run.scaler.step(run.optimizer)  # with fp16, a non-finite gradient skips the step (dynamic scale)
        run.scaler.update()
        run.scheduler.step()
        run.step += 1
        # One all-reduce per step: loss, accuracy, anything non-finite, and whether a rank was asked to stop.
        grad_bad = scalar(0.0) if run.scaler.is_enabled() else (~torch.isfinite(norm)).double()
        state_bad = (~torch.stack([torch.isfinite(t).all() for t in state]).all()).double()
        stats = torch.stack([loss.detach().double() * len(y), correct.double(), scalar(len(y)), grad_bad, state_bad,
                             scalar(float(stop.requested))])
        loss_sum, n_correct, n, grad_bad, state_bad, stopping = all_sum(stats, ctx).tolist()
        if not math.isfinite(loss_sum) or grad_bad or state_bad:
            raise NonFiniteError(f"{what_went_nonfinite(run.net, loss_sum / n, grad_bad)} at epoch {run.epoch + 1}, "
                                 f"step {run.step} (of {steps})")
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
    return {"train_loss": float(totals[0] / totals[2]), "train_acc1": float(100 * totals[1] / totals[2])}


class FiringRates:
    """Mean neuron output per stage (``net.stage_of``; the firing rate of spiking neurons), via hooks."""

    def __init__(self, net: nn.Module, device: torch.device) -> None:
        stages = {name: net.stage_of(name)[0] for name, m in net.named_modules() if isinstance(m, Neuron)}
        self.groups = sorted(set(stages.values()))
        self.sums = torch.zeros(2 * len(self.groups), dtype=torch.float64, device=device)  # per group: sum, count
        for name, m in net.named_modules():
            if isinstance(m, Neuron):
                m.register_forward_hook(self.hook(self.groups.index(stages[name])))

    def hook(self, i: int):
        def record(module: nn.Module, inputs, out: torch.Tensor) -> None:
            if not module.training:
                self.sums[2 * i] += out.detach().double().sum()
                self.sums[2 * i + 1] += out.numel()
        return record

    def pop(self, ctx: Context) -> dict:
        sums = all_sum(self.sums.clone(), ctx).cpu()
        self.sums.zero_()
        return {g: float(sums[2 * i] / sums[2 * i + 1]) for i, g in enumerate(self.groups) if sums[2 * i + 1]}


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, ctx: Context, dtype: torch.dtype | None, stop: StopFlag) -> dict:
    """Test loss (plain cross-entropy), top-1 and top-5 accuracy in %, over all ranks' shards."""
    model.eval()
    totals = torch.zeros(5, device=ctx.device, dtype=torch.float64)  # loss x samples, top-1, top-5, samples, stop
    for x, y in tqdm(loader, desc="test", leave=False, disable=not (ctx.is_main and sys.stderr.isatty()),
                     dynamic_ncols=True):
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
# Checkpoints (files and folders: checkpoints.py).

def save(run: Run, cfg: Config, ctx: Context, paths: list[Path]) -> None:
    """Every rank's random state goes to rank 0, which writes the checkpoint to each path in turn."""
    rng = all_rng_states()
    if not ctx.is_main:
        return
    state = {"model": run.net.state_dict(), "model_config": model_config(run.net), "config": asdict(cfg), "world": ctx.world,
             "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
             "scaler": run.scaler.state_dict(), "epoch": run.epoch, "step": run.step, "best_acc1": run.best_acc1,
             "best_epoch": run.best_epoch, "history": run.history, "rng": rng}
    for path in paths:
        save_checkpoint(state, path)


def restore(run: Run, ckpt: dict, ctx: Context) -> None:
    run.net.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    run.scaler.load_state_dict(ckpt["scaler"])
    run.epoch, run.step = ckpt["epoch"], ckpt["step"]
    run.best_acc1, run.best_epoch, run.history = ckpt["best_acc1"], ckpt["best_epoch"], list(ckpt["history"])
    set_rng_state(ckpt["rng"][min(ctx.rank, len(ckpt["rng"]) - 1)])


def finished(ckpt: dict, cfg: Config, source: str) -> dict:
    print(f"{source} is a finished run: {ckpt['epoch']} of {cfg.epochs} epochs, best test top-1 "
          f"{ckpt['best_acc1']:.2f}% at epoch {ckpt['best_epoch']}; to train longer pass --epochs N "
          f"with N > {ckpt['epoch']}", flush=True)
    last = ckpt["history"][-1]["test_acc1"] if ckpt["history"] else math.nan
    return {"best_acc1": ckpt["best_acc1"], "best_epoch": ckpt["best_epoch"], "final_acc1": last,
            "output": str(Path(source).parent), "finished": True}


# ----------------------------------------------------------------------------------------------
# Putting it together.

def stopped(out: Path, run: Run, ctx: Context) -> NoReturn:
    """After Ctrl-C / SIGTERM: say where training stopped and how to continue; exit with 130."""
    if ctx.is_main:
        where = f"epoch {run.epoch + 1}, step {run.step}" if run.step else f"the end of epoch {run.epoch}"
        print(f"\nstopped at {where}; saved {out / 'last.pth'}. Continue with --resume {out / 'last.pth'}",
              flush=True)
    raise SystemExit(EXIT_INTERRUPTED)


def finish_epoch(run: Run, cfg: Config, out: Path, ctx: Context, metrics: dict, started: float,
                 scalars) -> None:
    """Count the epoch, track the best top-1; save best.pth, last.pth, then log.csv (this order
    keeps the folder consistent at every crash point: resuming rewrites log.csv from last.pth)."""
    run.epoch, run.step = run.epoch + 1, 0
    improved = metrics["test_acc1"] > run.best_acc1
    if improved:
        run.best_acc1, run.best_epoch = metrics["test_acc1"], run.epoch
    row = {"epoch": run.epoch, **{k: metrics[k] for k in CSV_COLUMNS[1:6]},
           "lr": run.optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - started}
    run.history.append(row)
    save(run, cfg, ctx, [out / "best.pth"] * improved + [out / "last.pth"])
    if not ctx.is_main:
        return
    write_log(out / "log.csv", run.history)
    for key, value in {**row, **{f"firing_rate/{g}": r for g, r in metrics["firing_rates"].items()}}.items():
        if key not in ("epoch", "seconds"):
            scalars.add_scalar(key, value, run.epoch)
    scalars.flush()
    tqdm.write(f"epoch {run.epoch}: train loss {row['train_loss']:.4f} acc {row['train_acc1']:.2f}% | "
               f"test loss {row['test_loss']:.4f} top-1 {row['test_acc1']:.2f}% top-5 {row['test_acc5']:.2f}% | "
               f"{row['seconds']:.1f}s")


def header(cfg: Config, net: nn.Module, samples: str, ctx: Context, dtype: torch.dtype | None) -> str:
    """Model, spec, T, neuron, data, device: what the run is."""
    return (f"{cfg.model} (spec {cfg.spec or 'none'}, T {net.T}, neuron {net.cfg.neuron}) on {cfg.dataset}: "
            f"{samples}, {sum(p.numel() for p in net.parameters()):,} parameters, "
            f"{str(dtype or torch.float32).removeprefix('torch.')} on {ctx.world} x {ctx.device.type}")


def train(cfg: Config, ctx: Context, net: nn.Module, model: nn.Module, sets: tuple[Dataset, Dataset],
          test_loader: DataLoader, info: DatasetInfo, dtype: torch.dtype | None, out: Path, ckpt: dict | None) -> dict:
    """The epoch loop; returns the best-over-epochs and the final test top-1."""
    train_set, test_set = sets
    sampler = DistributedSampler(train_set, num_replicas=ctx.world, rank=ctx.rank, shuffle=True, seed=cfg.seed,
                                 drop_last=True)
    steps = len(sampler) // cfg.batch_size
    if steps == 0:
        fail(f"the training set has {len(sampler)} samples per process, fewer than --batch-size "
             f"{cfg.batch_size}; lower --batch-size")
    peak = peak_lr(cfg, ctx.world)
    optimizer = build_optimizer(net, peak, cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_at(step, cfg, steps, ctx.world) / peak)
    mixup = (MixupCutmix(info.num_classes, cfg.mixup, cfg.cutmix, cfg.mixup_prob, cfg.mixup_switch_prob,
                         cfg.smoothing, event_cutmix=cfg.event_cutmix) if cfg.mixup > 0 or cfg.cutmix > 0 else None)
    erasing = cfg.random_erasing if cfg.augment and cfg.dataset in ("cifar10", "cifar100") else 0.0
    run = Run(model, net, optimizer, scheduler, torch.amp.GradScaler("cuda", enabled=dtype == torch.float16),
              mixup, info.num_classes, dtype, erasing)
    if ckpt:
        restore(run, ckpt, ctx)
    rates = FiringRates(net, ctx.device)
    eval_dtype = None if cfg.eval_precision == "fp32" else dtype
    scalars = scalar_writer(out / "tensorboard", purge_step=run.epoch + 1) if ctx.is_main else None
    if ctx.is_main:
        write_text(out / "config.yaml", to_yaml(cfg, ROLES.run_only))
        write_text(out / "recipe.json", json.dumps(resolve_recipe(cfg, steps, ctx.world), indent=2) + "\n")
        write_log(out / "log.csv", run.history)
        samples = f"{len(train_set)} train / {len(test_set)} test samples"
        print(f"{header(cfg, net, samples, ctx, dtype)}, peak lr {peak:.3g}; writing to {out}", flush=True)

    stop, metrics = StopFlag(), {}
    with stop.installed():
        while run.epoch < cfg.epochs:
            started = time.perf_counter()
            sampler.set_epoch(run.epoch)
            worker_seed = int(np.random.SeedSequence([cfg.seed, ctx.rank, run.epoch]).generate_state(1)[0])
            loader = make_loader(train_set, list(sampler)[run.step * cfg.batch_size:], cfg, ctx, True, worker_seed)
            train_metrics = (train_one_epoch(run, loader, cfg, ctx, stop, steps) if run.step < steps
                             else {"train_loss": math.nan, "train_acc1": math.nan})
            if stop.agreed:  # mid-epoch: save the step reached, skip the evaluation
                save(run, cfg, ctx, [out / "last.pth"])
                stopped(out, run, ctx)
            metrics = {**train_metrics, **evaluate(model, test_loader, ctx, eval_dtype, stop),
                       "firing_rates": rates.pop(ctx)}
            finish_epoch(run, cfg, out, ctx, metrics, started, scalars)
            if stop.agreed and run.epoch < cfg.epochs:
                stopped(out, run, ctx)

    summary = {"best_acc1": run.best_acc1, "best_epoch": run.best_epoch,
               "final_acc1": metrics.get("test_acc1", math.nan), "output": str(out)}
    if ctx.is_main:
        scalars.close()
        write_curves(out / "curves.png", run.history, f"{cfg.model} on {cfg.dataset}")
        print(f"best test top-1 over epochs (what the paper reports): {summary['best_acc1']:.2f}% "
              f"at epoch {summary['best_epoch']}; final test top-1: {summary['final_acc1']:.2f}%")
    return summary


def evaluate_checkpoint(cfg: Config, ctx: Context, ckpt: dict, net: nn.Module, model: nn.Module,
                        test_set: Dataset, test_loader: DataLoader, dtype: torch.dtype | None) -> dict:
    """--eval-only: load the weights (ours by key, the authors' through load_official), evaluate."""
    if is_ours(ckpt, records_run=True):
        net.load_state_dict(ckpt["model"])
    else:
        load_official(net, ckpt, allow_pickle=cfg.allow_pickle)
    if ctx.is_main:
        print(header(cfg, net, f"{len(test_set)} test samples", ctx, dtype), flush=True)
    metrics = evaluate(model, test_loader, ctx, None if cfg.eval_precision == "fp32" else dtype, StopFlag())
    if ctx.is_main:
        print(f"{cfg.checkpoint}: test top-1 {metrics['test_acc1']:.2f}%, top-5 {metrics['test_acc5']:.2f}%, "
              f"loss {metrics['test_loss']:.4f} on {len(test_set)} samples")
    return metrics


def main(argv: list[str] | None = None) -> dict:
    """Train, or with --eval-only evaluate; returns the metrics. Bad input exits with a message."""
    cfg, given = parse_args(argv), given_settings(argv)
    if cfg.print_recipe:  # for one process; the data is not read
        try:
            print(json.dumps(resolve_recipe(cfg, config_steps_per_epoch(cfg), 1), indent=2))
        except ValueError as e:
            fail(str(e))
        return {}
    ctx = setup(cfg.device)
    try:
        with ExitStack() as held:
            path = cfg.resume or cfg.checkpoint
            ckpt = read_checkpoint(path, cfg.allow_pickle and cfg.eval_only) if path else None
            if path:
                cfg = settings_from(ckpt, cfg, given, path, ctx.world, ROLES)
            if cfg.resume and ckpt["epoch"] >= cfg.epochs and ckpt["step"] == 0:
                return finished(ckpt, cfg, cfg.resume)
            parameters = checked_model_size(cfg)
            check_data_dir(cfg.data_dir, cfg.dataset, cfg.download, cfg.cache_dir)
            # 12 bytes a parameter (weights, two AdamW moments), for best.pth, last.pth and their temporary files
            out = None if cfg.eval_only else on_main(lambda: open_run_folder(
                cfg.output and Path(cfg.output), cfg.resume and Path(cfg.resume), ckpt, cfg.overwrite,
                4 * 12 * parameters, held, default_run_name(cfg.dataset, cfg.model)))
            for seed_fn in (random.seed, np.random.seed, torch.manual_seed):
                seed_fn(cfg.seed + ctx.rank)
            if cfg.deterministic:
                torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
            train_set, test_set, info = build_data(cfg)
            net = build_model(model_record(cfg, info)).to(ctx.device)
            if cfg.eval_only and is_ours(ckpt, records_run=True) and not cfg.override:
                same_model(model_config(net), ckpt["model_config"], path)
            net.checkpoint_stages = cfg.checkpoint_stages
            model = torch.compile(net) if cfg.compile else net
            if ctx.world > 1:
                model = DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
            dtype = autocast_dtype(cfg.precision, ctx.device)
            test_loader = make_loader(test_set, list(range(ctx.rank, len(test_set), ctx.world)), cfg, ctx, False)
            if cfg.eval_only:
                metrics = evaluate_checkpoint(cfg, ctx, ckpt, net, model, test_set, test_loader, dtype)
            else:
                metrics = train(cfg, ctx, net, model, (train_set, test_set), test_loader, info, dtype, out,
                                ckpt)
            if ctx.world > 1:  # no rank tears the group down while another still writes (gloo aborts then)
                dist.barrier()
            return metrics
    except NonFiniteError as e:
        last = out / "last.pth"
        kept = (f"the last good checkpoint {last} (epoch {len(read_checkpoint(last)['history'])}) is kept"
                if last.exists() else "no epoch had finished, so there is no checkpoint")
        raise SystemExit(f"{e}; stopped: {kept}. Try a lower --lr or --clip-grad.") from None
    except (FileNotFoundError, CheckpointError, CheckpointMismatchError, RunFolderError, SettingsError, *DATA_ERRORS) as e:
        fail(str(e))
    finally:
        if ctx.world > 1:
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
