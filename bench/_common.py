"""Shared by the bench scripts: the header (machine, versions, date, load), building a workload (a
zoo model, optionally with spikingjelly's LIFNode swapped in, or the authors' set-up transcribed in
``authors.AuthorsNet``; a batch, a training step and an inference batch), timing with warm-up and the median of interleaved repeats, peak memory measured in
a fresh process per configuration, and plain-text tables.

Peak memory (``peak_memory``):

- CUDA: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``, i.e. the peak of
  tensor memory (parameters, gradients, optimizer state, activations), without the allocator's cache.
- CPU: the rise of the resident set size of a fresh process during the job (peak ``VmHWM`` from
  /proc/self/status, reset through /proc/self/clear_refs just before, minus ``VmRSS`` just before),
  plus the exact bytes of the parameters, buffers and (training) optimizer state, which were already
  resident. So it counts what CUDA's number counts, plus allocator overhead, but not the code pages
  of torch's libraries. Each job runs once untimed first (which pages in the kernels' code and creates
  the optimizer state). The child runs with ``MALLOC_MMAP_THRESHOLD_=65536``, so every tensor above
  64 KiB is mapped and unmapped on its own and the resident size follows the live
  tensors instead of glibc's heap high-water mark. Each configuration gets its own process, so that
  memory one configuration leaves behind (caches, heap fragments) does not hide in the next one's.

``process_peak`` is the cruder measure of a whole process (CPU): the peak resident size of a fresh
process that builds the workload and runs a few training steps, with glibc's default heap and the
libraries' own pages (about 0.5 GiB for torch here) included.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import multiprocessing
import os
import platform
import statistics
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import kernels  # noqa: E402
import maxformer  # noqa: E402
import zoo  # noqa: E402
import neurons  # noqa: E402
from authors import AuthorsNet  # noqa: E402
from bench_neurons import cpu_name  # noqa: E402

MIB = 2 ** 20


# ----------------------------------------------------------------------------- header

def header(device: torch.device) -> str:
    """Machine, load, library versions and date: the first lines of every bench output."""
    try:
        sj = version("spikingjelly")
    except PackageNotFoundError:
        sj = "not installed"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    machine = f"{cpu_name()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    if device.type == "cuda":
        machine += f"; GPU {torch.cuda.get_device_name(device)}"
    return "\n".join([
        f"date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"machine: {machine}",
        f"load average (1, 5, 15 min): {load}",
        f"python {platform.python_version()}, torch {torch.__version__}, spikingjelly {sj}",
    ])


# ----------------------------------------------------------------------------- workloads

def swap_in_spikingjelly(model: torch.nn.Module) -> torch.nn.Module:
    """Make ``model`` the earlier re-creation of the authors' set-up (``authors.AuthorsNet`` is the
    faithful one), same function: every ``neurons.Neuron`` becomes
    spikingjelly's multi-step ``LIFNode`` (tau 2, hard reset to 0, detached reset, sigmoid surrogate
    alpha 4) with the neuron's ``v_threshold``; every ``kernels.MaxPool`` becomes ``nn.MaxPool2d``;
    and no layer keeps its spike input as bytes (the nodes are not ``neurons.Neuron``, so the memory plan,
    memory.py, does not see them; the attention products are told so). spikingjelly nodes keep their membrane between calls: call
    ``spikingjelly.activation_based.functional.reset_net(model)`` after every forward."""
    try:
        from spikingjelly.activation_based.neuron import LIFNode
    except ImportError as err:
        raise SystemExit(f"spikingjelly is needed for the comparison ({err}); pip install spikingjelly loguru") from None

    class AuthorsLIF(LIFNode):
        spiking = False  # our layers then save its output as autograd does, in the float dtype

    for module in list(model.modules()):
        if isinstance(module, maxformer.SpikeProduct):
            module.binary = 0
        for name, child in list(module.named_children()):
            if isinstance(child, neurons.Neuron):
                module.register_module(name, AuthorsLIF(tau=2.0, detach_reset=True,
                                                        v_threshold=child.dynamics.v_threshold, step_mode="m"))
            elif isinstance(child, kernels.MaxPool):
                module.register_module(name, torch.nn.MaxPool2d(3, child.stride, 1))
    return model


@dataclass
class Config:
    """One measured configuration (picklable, so a child process can rebuild it)."""

    model: str
    batch: int
    T: int | None = None          # None: the model's own T
    device: str = "cpu"
    amp: bool = False              # bfloat16 autocast
    spikingjelly: bool = False     # swap spikingjelly's LIFNode in for our neurons
    authors: bool = False          # the authors' set-up instead of our model (authors.AuthorsNet)
    neuron_backend: str = "auto"
    checkpoint_stages: bool = False
    threads: int = 0               # torch CPU threads in a child process (0: torch's default)



class Workload:
    """A model, a random batch and its labels, an AdamW optimizer, and the two measured jobs."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        overrides = {} if cfg.T is None else {"T": cfg.T}
        if cfg.neuron_backend != "auto":
            overrides["neuron_backend"] = cfg.neuron_backend
        model = zoo.create_model(cfg.model, **overrides)
        if cfg.spikingjelly:
            swap_in_spikingjelly(model)
        model.checkpoint_stages = cfg.checkpoint_stages
        if cfg.authors:
            model = AuthorsNet(cfg.model, model)
        self.model = model.to(self.device)
        c = model.cfg
        T = c.T if cfg.T is None else cfg.T
        event = model.is_event  # event models read frames [B, T, C, H, W]
        shape = (cfg.batch, T, c.in_channels) if event else (cfg.batch, c.in_channels)
        self.x = torch.rand(*shape, c.img_size, c.img_size, device=self.device)
        if event:
            self.x = (self.x > 0.9).float()  # sparse binary events
        self.y = torch.randint(0, c.num_classes, (cfg.batch,), device=self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.fused = None

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.cfg.amp else nullcontext()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def forward(self, model: torch.nn.Module) -> torch.Tensor:
        """Logits of the batch; clears spikingjelly's membrane state afterwards (the authors' set-up
        keeps its neurons' state until :meth:`reset`)."""
        with self.autocast():
            out = model(self.x)
        if self.cfg.spikingjelly:
            from spikingjelly.activation_based.functional import reset_net
            reset_net(model)
        return out

    def reset(self, model: torch.nn.Module) -> None:
        """The authors' ``functional.reset_net`` after a step: frees what their neurons kept."""
        if isinstance(model, AuthorsNet):
            model.reset()

    def loss(self) -> torch.Tensor:
        """Cross-entropy of a training forward of the batch (the model in training mode)."""
        self.model.train()
        with self.autocast():
            return torch.nn.functional.cross_entropy(self.forward(self.model), self.y)

    def train_step(self) -> None:
        """Forward, cross-entropy, backward and one AdamW step (then the authors' state reset)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.loss().backward()
        self.optimizer.step()
        self.reset(self.model)

    def saved_bytes(self) -> int:
        """Bytes a training forward keeps for the backward (``kernels.saved_bytes``), the authors'
        neurons' kept state included."""
        try:
            return kernels.saved_bytes(self.loss)
        finally:
            self.reset(self.model)

    @torch.no_grad()
    def infer(self) -> None:
        """One inference batch (eval mode, no graph)."""
        self.model.eval()
        self.forward(self.model)
        self.reset(self.model)

    @torch.no_grad()
    def infer_fused(self) -> None:
        """One inference batch through a copy of the model with BN folded into the convolutions."""
        if self.fused is None:
            self.fused = copy.deepcopy(self.model.eval()).fuse()
        self.forward(self.fused)
        self.reset(self.fused)


# ----------------------------------------------------------------------------- timing

def median_seconds(jobs: dict[str, Callable[[], None]], repeats: int, warmup: int = 1,
                   sync: Callable[[], None] = lambda: None, desc: str = "timing") -> dict[str, float]:
    """Median wall time in seconds of each job (name -> function) after ``warmup`` untimed runs.

    The jobs run interleaved, round by round, so that load from other processes hits all of them
    alike; the median of ``repeats`` rounds is robust to a few disturbed rounds.
    """
    times: dict[str, list[float]] = {name: [] for name in jobs}
    rounds = warmup + repeats
    with tqdm(total=rounds * len(jobs), desc=desc, file=sys.stderr, leave=False) as bar:
        for r in range(rounds):
            for name, job in jobs.items():
                sync()
                start = time.perf_counter()
                job()
                sync()
                if r >= warmup:
                    times[name].append(time.perf_counter() - start)
                bar.update()
    return {name: statistics.median(t) for name, t in times.items()}


# ----------------------------------------------------------------------------- peak memory

def rss_bytes(field: str = "VmRSS") -> int:
    """This process's resident set size now (``VmRSS``) or at its peak (``VmHWM``), from /proc."""
    with open("/proc/self/status") as f:
        kib = next(line.split()[1] for line in f if line.startswith(field + ":"))
    return int(kib) * 1024


def reset_peak_rss() -> None:
    """Set the peak resident size (``VmHWM``) back to the current one (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def state_bytes(work: Workload, optimizer: bool) -> int:
    """Bytes of the model's parameters and buffers, plus the optimizer's state if ``optimizer``."""
    tensors = [*work.model.parameters(), *work.model.buffers()]
    if optimizer:
        tensors += [t for state in work.optimizer.state.values() for t in state.values() if torch.is_tensor(t)]
    return sum(t.numel() * t.element_size() for t in tensors)


def _measure_child(cfg_dict: dict) -> dict[str, float]:
    """Runs in a fresh process: peak bytes of one inference batch and of one training step, each
    measured on its second run (the first pages in the kernels' code and creates the optimizer state)."""
    cfg = Config(**cfg_dict)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cuda = cfg.device.startswith("cuda")
    out = {}
    try:
        work = Workload(cfg)
        for name, job in (("infer", work.infer), ("train", work.train_step)):
            job()
            work.sync()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            else:
                before = rss_bytes()
                reset_peak_rss()
            job()
            work.sync()
            if cuda:
                out[name] = torch.cuda.max_memory_allocated()
            else:
                out[name] = rss_bytes("VmHWM") - before + state_bytes(work, optimizer=name == "train")
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as err:
        if "memory" not in str(err).lower():
            raise
        out["oom"] = str(err).splitlines()[0][:200]
    return out


def _process_peak_child(cfg_dict: dict, steps: int) -> int:
    """Runs in a fresh process: builds the workload, runs ``steps`` training steps, returns ``VmHWM``."""
    cfg = Config(**cfg_dict)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    work = Workload(cfg)
    for _ in range(steps):
        work.train_step()
    return rss_bytes("VmHWM")


def process_peak(cfg: Config, steps: int = 3) -> int:
    """Peak resident bytes of a whole fresh process that builds ``cfg``'s workload and runs ``steps``
    training steps (libraries, allocator slack and the first step included; see the module docstring)."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_process_peak_child, (asdict(cfg), steps))


@contextmanager
def _mmap_threshold():
    old = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    try:
        yield
    finally:
        if old is None:
            del os.environ["MALLOC_MMAP_THRESHOLD_"]
        else:
            os.environ["MALLOC_MMAP_THRESHOLD_"] = old


def peak_memory(cfg: Config) -> dict[str, float]:
    """Peak memory in bytes of one inference batch (``infer``) and one training step (``train``) of
    ``cfg``, measured in a fresh process (see the module docstring); ``oom`` holds the error line
    when the configuration does not fit."""
    with _mmap_threshold():
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1) as pool:
            return pool.apply(_measure_child, (asdict(cfg),))


# ----------------------------------------------------------------------------- tables

def table(rows: list[list[object]], headers: list[str]) -> str:
    """A plain-text table, numbers right-aligned."""
    def cell(c: object) -> str:
        if not isinstance(c, float):
            return str(c)
        return f"{c:.0f}" if abs(c) >= 100 else f"{c:.3g}"

    cells = [[str(h) for h in headers]] + [[cell(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([fmt(cells[0]), "  ".join("-" * w for w in widths), *map(fmt, cells[1:])])


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, torch.device]:
    """Add the flags every bench script takes (device, threads, repeats, warm-up, AMP, neuron backend,
    memory on/off), parse ``argv``, set torch's threads, check the device and print the header."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch CPU threads, in this process and the memory children (default: all cores)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per configuration; the median counts")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds before timing")
    parser.add_argument("--amp", action="store_true",
                        help="bfloat16 autocast (the paper's CUDA set-up); default float32")
    parser.add_argument("--neuron-backend", default="auto", choices=list(neurons.BACKENDS),
                        help="our neurons' backend (default auto: triton on CUDA float32, else fused; "
                             "compiled is the fast one on CPU after a one-off compile)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements (faster)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device; use --device cpu")
    print(header(device))
    return args, device
