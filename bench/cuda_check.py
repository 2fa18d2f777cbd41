"""Everything CUDA in one prepared run (issue 12, part 2), written to one JSON + Markdown report.

    python bench/cuda_check.py --dry-run --out /tmp/cuda-check       # CPU: build every case, run none
    python bench/cuda_check.py --out runs/cuda-check --budget-s 500  # on a GPU machine
    python bench/cuda_check.py --out runs/cuda-check --cases 'bench:*' --budget-s 150   # rerun some

The cases, in the order they run (``--dry-run`` lists them; ``--cases`` picks some by glob pattern):

- ``environment``: GPU, versions, the peak memory bandwidth of the GPU (``PEAK_BANDWIDTH``).
- ``triton-exact:<model>``: every neuron layer of a real model, on the input it really gets, through
  our Triton and our eager ``fused`` backends: spikes bit-equal, input gradients within
  ``|triton - fused| <= 1e-6 + 1e-5 |fused|`` (the criterion of tests/test_neurons.py).
- ``train-steps:<model>:<fp16|bf16>``: a few AdamW steps of every model family under autocast
  (fp16 with a ``GradScaler``): finite losses and gradients, float32 weights that moved.
- ``pytest-cuda``: pytest on the tests that need CUDA (a ``skipif`` naming CUDA, or "cuda" in the test's
  name); this module is the pytest plugin that selects them (``pytest_collection_modifyitems``).
- ``train-resume``: ``train.py --device cuda --epochs 1`` on digits-dvs, then ``--resume`` to epoch 2.
- ``torchrun-train``: ``torchrun --nproc_per_node 1 train.py ...`` on CUDA.
- ``torchrun-nccl``: ``torchrun --nproc_per_node 1`` of this file's ``--nccl-worker``: an NCCL process
  group, a DDP training step and an all-reduce.
- ``bandwidth``: our Triton LIF kernels' achieved memory bandwidth (6 tensors moved per forward +
  backward, as in bench/README.md "Neurons") against the GPU's peak and a measured copy; spikingjelly
  0.0.0.0.12's CuPy kernel timed on the same tensors.
- ``bench:<workload>:<fp16|fp32>:<ours|sj-cupy>``: training-step time (median of ``--repeats`` after
  ``--warmup``) and peak GPU memory (``torch.cuda.max_memory_allocated``) of Max-Former 10-768 at T=1
  and T=4 (batch 32; paper Table 8: 0.179 s/iter and 15.4 GB at T=1 on an A30), the CIFAR 4-384 model
  at batch 128 and the DVS128 Gesture model at batch 16, each with our neurons (``ours``: Triton in
  fp32, eager ``fused`` under fp16 autocast) and with every LIF replaced by spikingjelly 0.0.0.0.12's
  ``MultiStepLIFNode(backend='cupy')``, the authors' CUDA neuron (``sj-cupy``). fp16 (autocast and a
  GradScaler, the authors' training precision: docs/reference/recipes.md) runs first, then fp32; bf16
  is not benchmarked: that CuPy kernel has no bf16 path. The report pairs the two variants of one run.

``--budget-s`` bounds the whole run: a case starts only if its estimate (``Case.estimate_s``) fits in
what is left, and a running case is stopped when the budget runs out; skipped cases say why.
``--dry-run`` runs nothing on CUDA: models are built on the meta device (forward and backward there
check the shapes), commands are assembled and their train.py flags parsed, pytest collects the
selected tests, and imports are resolved. The exit status is 0 when no case failed, 1 otherwise, 2
for bad input. Names this script relies on are listed in ``RELIED_ON`` (and in the report).
"""
from __future__ import annotations

import argparse
import datetime
import fnmatch
import functools
import gc
import importlib.util
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import neurons  # noqa: E402
import zoo  # noqa: E402
from _common import header  # noqa: E402

SCHEMA = "maxformer-cuda-check/1"
GB = 1e9
RELIED_ON = (
    "zoo.create_model(name, T=..., neuron_backend=...)", "zoo.list_models()",
    "model.cfg.{T, in_channels, img_size, num_classes}", "neurons.Neuron", "neurons.LIF",
    "neurons.LIF(backend=...)", "neurons.BACKENDS", "LIF.dynamics.{tau, v_threshold, v_reset, decay_input, "
    "detach_reset, surrogate, alpha}", "bench._common.header(device)",
    "train.parse_args(argv)", "train.py flags --device --precision --epochs --resume --output --data-dir "
    "--limit-train --limit-test --batch-size --seed",
    "spikingjelly 0.0.0.0.12: spikingjelly.clock_driven.neuron.MultiStepLIFNode(backend='cupy'), "
    "neuron.cupy, neuron.neuron_kernel, surrogate.Sigmoid, functional.reset_net",
    "triton (through neurons.LIF(backend='triton'))", "torch.distributed.run (torchrun)",
)
# Peak DRAM bandwidth in bytes/s by a substring of torch.cuda.get_device_name (NVIDIA datasheets);
# the first match counts, so more specific names come first.
PEAK_BANDWIDTH = (("H200", 4.8e12), ("H100 PCIe", 2.0e12), ("H100", 3.35e12),
                  ("A100-SXM4-80GB", 2.039e12), ("A100", 1.555e12), ("A30", 0.933e12))
TABLE8 = {"model": "max_former_10_768", "T": 1, "batch": 32, "s_per_iter": 0.179, "memory_gb": 15.4, "gpu": "A30"}
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
DATA_FLAGS = ("--limit-train", "64", "--limit-test", "32", "--batch-size", "16", "--seed", "0")


# ----------------------------------------------------------------------------- models and steps

@dataclass(frozen=True)
class ModelCase:
    """A zoo model (``zoo.create_model``) at a batch size, optionally at another T."""

    model: str
    batch: int
    T: int | None = None
    event: bool = False   # reads event frames [B, T, 2, H, W] instead of images [B, C, H, W]

    @property
    def label(self) -> str:
        return f"{self.model}" + ("" if self.T is None else f"-T{self.T}") + f"-b{self.batch}"

    def build(self, device: torch.device | str, backend: str | None = None) -> nn.Module:
        """The model, created directly on ``device`` (``meta`` for the dry run), seeded."""
        overrides: dict[str, object] = {} if self.T is None else {"T": self.T}
        if backend is not None:
            overrides["neuron_backend"] = backend
        torch.manual_seed(0)
        with torch.device(device):
            return zoo.create_model(self.model, **overrides)

    def batch_for(self, model: nn.Module, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """A random input batch (binary events for event models) and labels."""
        c = model.cfg
        g = torch.Generator(device="cpu").manual_seed(1)
        shape = (self.batch, c.T, c.in_channels) if self.event else (self.batch, c.in_channels)
        x = torch.rand(*shape, c.img_size, c.img_size, generator=g)
        if self.event:
            x = (x > 0.9).float()
        y = torch.randint(0, c.num_classes, (self.batch,), generator=g)
        return x.to(device), y.to(device)


# One model per family for the correctness cases (small batches), and the benchmark workloads.
FAMILIES = (ModelCase("max_former_cifar10", 16), ModelCase("max_former_dvsgesture", 2, event=True),
            ModelCase("max_former_10_384", 4), ModelCase("ms_qkformer_cifar10", 16),
            ModelCase("max_resnet18_cifar10", 16))
EXACT = (ModelCase("max_former_cifar10", 32), ModelCase("max_former_dvsgesture", 4, event=True),
         ModelCase("max_former_10_768", 8), ModelCase("ms_qkformer_cifar10", 32),
         ModelCase("max_resnet18_cifar10", 32))
WORKLOADS = (ModelCase("max_former_10_768", 32, T=1), ModelCase("max_former_10_768", 32, T=4),
             ModelCase("max_former_cifar10", 128), ModelCase("max_former_dvsgesture", 16, event=True))


def lif_layers(model: nn.Module) -> list[neurons.LIF]:
    """The model's LIF (and IF) neurons in module order."""
    return [m for m in model.modules() if isinstance(m, neurons.LIF)]


@functools.cache
def meta_check(case: ModelCase, backend: str | None = None) -> dict:
    """Dry run of a model case: built at full size on the meta device, where a forward and backward
    check the shapes; model code that cannot run on meta runs them on CPU at batch 1 instead."""
    model = case.build("meta", backend)
    x, y = case.batch_for(model, "meta")
    details = {"model": case.model, "batch": case.batch, "T": model.cfg.T, "input": list(x.shape),
               "parameters": sum(p.numel() for p in model.parameters()), "lif_layers": len(lif_layers(model))}
    try:
        F.cross_entropy(model(x), y).backward()
        details["checked_on"] = "meta"
    except (RuntimeError, NotImplementedError) as err:
        one = ModelCase(case.model, 1, case.T, case.event)
        model = one.build("cpu", backend)
        x, y = one.batch_for(model, "cpu")
        F.cross_entropy(model(x), y).backward()
        details.update(checked_on="cpu, batch 1", meta_error=str(err).splitlines()[0][:200])
    return details


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, dtype: torch.dtype | None,
               after_forward: Callable[[nn.Module], None]) -> torch.Tensor:
    """Forward under autocast (``dtype`` None: float32), cross-entropy, scaled backward, AdamW step."""
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=dtype) if dtype is not None else nullcontext():
        loss = F.cross_entropy(model(x), y)
    after_forward(model)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def no_reset(model: nn.Module) -> None:
    """Our neurons start every forward from rest: nothing to reset."""


# ----------------------------------------------------------------------------- the authors' neuron

@dataclass
class AuthorsNeuron:
    """spikingjelly 0.0.0.0.12's multi-step LIF with its CuPy kernels, as the authors' code uses it."""

    node: type
    sigmoid: type
    reset_net: Callable[[nn.Module], None]
    version: str

    def swap_into(self, model: nn.Module) -> int:
        """Replace every LIF of ``model`` with ``MultiStepLIFNode(backend='cupy')`` of the same dynamics
        (sigmoid surrogate only, as in the paper); returns how many were replaced."""
        count = 0
        for module in list(model.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, neurons.LIF):
                    d = child.dynamics
                    if d.surrogate != "sigmoid":
                        raise ValueError(f"{name}: surrogate {d.surrogate!r}; the authors' node is built with sigmoid")
                    module.register_module(name, self.node(
                        tau=d.tau, decay_input=d.decay_input, v_threshold=d.v_threshold, v_reset=d.v_reset,
                        surrogate_function=self.sigmoid(alpha=d.alpha), detach_reset=d.detach_reset,
                        backend="cupy"))
                    count += 1
        return count


def authors_neuron() -> tuple[AuthorsNeuron | None, str]:
    """spikingjelly 0.0.0.0.12's neuron with CuPy, or None and a note saying why it is unavailable."""
    bring = "bring the wheel as bench/README.md (CUDA check) says"
    try:
        from spikingjelly.clock_driven import functional, neuron, surrogate
    except ImportError as err:
        return None, f"spikingjelly 0.0.0.0.12 is not importable ({err}); {bring}"
    sj = version("spikingjelly")
    if neuron.cupy is None or neuron.neuron_kernel is None:
        return None, f"spikingjelly {sj} imports but its CuPy kernels do not (is CuPy installed?)"
    return AuthorsNeuron(neuron.MultiStepLIFNode, surrogate.Sigmoid, functional.reset_net, sj), f"spikingjelly {sj}"


# ----------------------------------------------------------------------------- cases

class BudgetExceeded(Exception):
    """Raised inside a case when the run's --budget-s is spent."""


class CaseFailed(Exception):
    """A check inside a case did not hold; the message says which."""


class SkipCase(Exception):
    """A case that cannot run here (the note says why); ``details`` what was checked before."""

    def __init__(self, note: str, details: dict | None = None) -> None:
        super().__init__(note)
        self.details = details or {}


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`BudgetExceeded` in the main thread once ``seconds`` have passed."""
    def on_alarm(signum: int, frame: object) -> None:
        raise BudgetExceeded(f"stopped: the --budget-s ran out after {seconds:.0f} s in this case")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Run:
    """What every case sees: the options, the scratch folder, the deadline and the authors' neuron."""

    args: argparse.Namespace
    work: Path
    deadline: float
    authors: AuthorsNeuron | None = None
    authors_note: str = ""
    log: list[str] = field(default_factory=list)

    @property
    def dry(self) -> bool:
        return self.args.dry_run

    @property
    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    @property
    def device(self) -> torch.device:
        return torch.device("cuda")


@dataclass
class Case:
    """One check: ``run`` on CUDA, ``dry`` on CPU; each returns its details (a JSON-able dict).
    ``estimate_s``: about how long it takes on an H200 (the budget rule)."""

    name: str
    group: str
    estimate_s: float
    run: Callable[[Run], dict]
    dry: Callable[[Run], dict]


def run_command(run: Run, name: str, argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``argv`` from the repository root in its own process group, within the budget; the output
    goes to ``commands.log``. Returns the exit status (124 when the budget ran out) and the output."""
    started = time.monotonic()
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=max(run.remaining, 1.0))
        rc = process.returncode
    except (subprocess.TimeoutExpired, BudgetExceeded):
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        rc = 124
    run.log.append(f"### {name}: {' '.join(argv)}\n# exit {rc} after {time.monotonic() - started:.1f} s\n{output}\n")
    return rc, output


def check(condition: bool, message: str) -> None:
    """Fail the current case with ``message`` unless ``condition`` holds."""
    if not condition:
        raise CaseFailed(message)


def cuda_env(run: Run) -> dict:
    """Details of the machine and the libraries (no CUDA call in the dry run)."""
    details = {"header": header(torch.device("cpu")).splitlines(), "torch": torch.__version__,
               "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
               "backends": list(neurons.BACKENDS), "authors_neuron": run.authors_note}
    for package in ("triton", "cupy-cuda13x", "cupy-cuda12x", "spikingjelly"):
        try:
            details[package] = version(package)
        except PackageNotFoundError:
            details[package] = None
    if not run.dry:
        props = torch.cuda.get_device_properties(0)
        name = torch.cuda.get_device_name(0)
        details.update(gpu=name, capability=list(torch.cuda.get_device_capability(0)),
                       memory_gb=props.total_memory / GB, multiprocessors=props.multi_processor_count,
                       peak_bandwidth_gb_s=(peak_bandwidth(name) or 0) / GB or None,
                       cudnn=torch.backends.cudnn.version(),
                       tf32_conv=torch.backends.cudnn.allow_tf32, tf32_matmul=torch.backends.cuda.matmul.allow_tf32)
    return details


def peak_bandwidth(device_name: str) -> float | None:
    """The datasheet peak memory bandwidth (bytes/s) of a GPU by name, or None if not in the table."""
    return next((bw for key, bw in PEAK_BANDWIDTH if key in device_name), None)


# --- triton-exact

def exact_case(case: ModelCase) -> Case:
    """Our Triton against our eager fused neurons on every neuron layer's real input."""
    def run(r: Run) -> dict:
        fused = case.build(r.device, "fused").train()
        twin = case.build(r.device, "triton").train()
        twin.load_state_dict(fused.state_dict())
        layers, twins = lif_layers(fused), lif_layers(twin)
        check(len(layers) == len(twins) > 0, f"{len(layers)} fused and {len(twins)} triton LIF layers")
        inputs: list[tuple[int, torch.Tensor]] = []  # (layer index, its input), in the order they ran

        def capture(index: int, module: nn.Module, args: tuple) -> None:
            inputs.append((index, args[0].detach().clone()))

        hooks = [m.register_forward_pre_hook(functools.partial(capture, i)) for i, m in enumerate(layers)]
        x, _ = case.batch_for(fused, r.device)
        with torch.no_grad():
            fused(x)
        for h in hooks:
            h.remove()
        missed = sorted(set(range(len(layers))) - {i for i, _ in inputs})
        check(not missed, f"LIF layers {missed} did not run in the forward")
        g = torch.Generator(device=r.device).manual_seed(2)
        worst_abs, worst_excess, unequal, shapes = 0.0, 0.0, [], set()
        for i, z in inputs:
            grad = torch.randn(z.shape, generator=g, device=r.device)
            (s_a, g_a), (s_b, g_b) = (spikes_and_grad(n, z, grad) for n in (layers[i], twins[i]))
            if not torch.equal(s_a, s_b):
                unequal.append(i)
            diff = (g_b - g_a).abs()
            worst_abs = max(worst_abs, diff.max().item())
            worst_excess = max(worst_excess, (diff - 1e-5 * g_a.abs()).max().item())
            shapes.add(tuple(z.shape))
        details = {"layers": len(layers), "calls": len(inputs), "distinct_shapes": sorted(map(list, shapes)),
                   "spikes_unequal_layers": unequal, "max_abs_grad_diff": worst_abs,
                   "max_excess_over_rtol_1e-5": worst_excess}
        check(not unequal, f"spikes differ in layers {unequal}")
        check(worst_excess <= 1e-6, f"gradients differ by {worst_abs:.3g} (more than 1e-6 + 1e-5 |g|)")
        return details

    def dry(r: Run) -> dict:
        details = dict(meta_check(case, "fused"))
        twin = case.build("meta", "triton")  # Triton runs on CUDA only: built, not run
        check(details["lif_layers"] == len(lif_layers(twin)) > 0, "the fused and triton models' layers differ")
        check(importlib.util.find_spec("triton") is not None, "triton is not importable")
        return details

    return Case(f"triton-exact:{case.model}", "exactness", 10, run, dry)


def spikes_and_grad(neuron: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes of ``neuron`` on a leaf copy of ``x`` and the input gradient for output gradient ``grad``."""
    leaf = x.clone().requires_grad_(True)
    spikes = neuron(leaf)
    (gx,) = torch.autograd.grad(spikes, leaf, grad)
    return spikes.detach(), gx


# --- train-steps

def steps_case(case: ModelCase, precision: str, steps: int = 4) -> Case:
    """A few training steps under autocast (fp16 with a GradScaler, or bf16). The GradScaler skips
    the steps whose scaled gradients overflow (its scale then halves), so under fp16 the gradients
    left by the last step may be inf; at least one step must have updated the weights."""
    dtype = PRECISIONS[precision]

    def run(r: Run) -> dict:
        model = case.build(r.device).train()
        x, y = case.batch_for(model, r.device)
        before = [p.detach().clone() for p in model.parameters()]
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
        losses, seconds, scales = [], [], []
        for _ in range(steps):
            torch.cuda.synchronize()
            start = time.perf_counter()
            losses.append(train_step(model, x, y, optimizer, scaler, dtype, no_reset).item())
            torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
            scales.append(scaler.get_scale() if scaler.is_enabled() else None)
        moved = sum(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
        grads_finite = all(torch.isfinite(p.grad).all().item() for p in model.parameters() if p.grad is not None)
        details = {"losses": losses, "seconds_per_step": seconds, "scales": scales, "parameters_moved": moved,
                   "parameters": len(before), "grads_finite": grads_finite}
        check(bool(torch.isfinite(torch.tensor(losses)).all()), f"non-finite loss {losses}")
        check(grads_finite or scaler.is_enabled(), "non-finite gradients without a GradScaler")
        check(all(p.dtype == torch.float32 for p in model.parameters()), "weights are not float32")
        check(moved > len(before) // 2, f"only {moved} of {len(before)} parameters changed")
        return details

    def dry(r: Run) -> dict:
        return {**meta_check(case), "precision": precision, "autocast_dtype": str(dtype), "steps": steps,
                "grad_scaler": dtype == torch.float16}

    return Case(f"train-steps:{case.model}:{precision}", "training", 6, run, dry)


# --- pytest on the CUDA tests

def needs_cuda(item: object) -> bool:
    """A test that needs CUDA: a ``skipif`` whose reason names CUDA, or "cuda" in the test's name."""
    reasons = " ".join(str(m.kwargs.get("reason", "")) for m in item.iter_markers("skipif"))
    return "cuda" in reasons.lower() or "cuda" in item.name.lower()


def pytest_collection_modifyitems(config: object, items: list) -> None:
    """pytest hook (this module loaded with ``-p cuda_check``): keep only the tests that need CUDA."""
    keep = [item for item in items if needs_cuda(item) and "test_cuda_check" not in str(item.path)]
    config.hook.pytest_deselected(items=[item for item in items if item not in keep])
    items[:] = keep


def cuda_tests_argv(collect_only: bool) -> list[str]:
    """pytest on tests/ with this module as the plugin that selects the CUDA tests (pytest.ini adds -q -rs)."""
    return [sys.executable, "-m", "pytest", "-p", "cuda_check", "tests", "-p", "no:cacheprovider",
            *(["--collect-only"] if collect_only else [])]


def cuda_tests_env() -> dict[str, str]:
    """The environment with bench/ on PYTHONPATH, so that ``-p cuda_check`` imports this module."""
    paths = [str(ROOT / "bench"), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def cuda_tests_counts(output: str) -> dict[str, int]:
    """Counts from pytest's last summary line ("3 passed, 1 skipped, 200 deselected in 9.1s")."""
    lines = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed|deselected|error)", line)]
    found = re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed)", lines[-1] if lines else "")
    return {word.rstrip("s") if word.startswith("error") else word: int(n) for n, word in found}


def cuda_tests_run(r: Run) -> dict:
    """Run the CUDA tests; passes when pytest exits 0 with at least one test passed."""
    rc, output = run_command(r, "pytest-cuda", cuda_tests_argv(False), cuda_tests_env())
    counts = cuda_tests_counts(output)
    details = {"exit": rc, **counts, "skip_reasons": re.findall(r"SKIPPED \[\d+\] (.*)", output)}
    check(rc == 0 and counts.get("passed", 0) > 0, f"pytest exit {rc}, {counts}; see commands.log")
    return details


def cuda_tests_dry(r: Run) -> dict:
    """Collect the CUDA tests (this imports every test module) and list the selected ones."""
    rc, output = run_command(r, "pytest-cuda (collect)", cuda_tests_argv(True), cuda_tests_env())
    tests = [line.strip() for line in output.splitlines() if "::" in line]
    check(rc == 0 and tests, f"pytest --collect-only exit {rc}; see commands.log")
    return {"command": " ".join(cuda_tests_argv(False)[1:]), "selected": len(tests),
            "tests": sorted({t.split("[")[0] for t in tests})}


# --- train.py runs

def train_argv(r: Run, output: str, *flags: str) -> list[str]:
    """Flags of a tiny digits-dvs training run on CUDA writing to ``output`` under the scratch folder."""
    return ["train.py", "--device", "cuda", "--data-dir", str(r.work / "data"), "--output", str(r.work / output),
            *DATA_FLAGS, *flags]


def torchrun(*argv: str) -> list[str]:
    """``torchrun --standalone --nproc_per_node 1 ...`` (torch.distributed.run is torchrun's module)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", *argv]


def parsed_train_flags(argv: list[str]) -> dict:
    """Dry run: train.py's own parser accepts these flags (exits 2 on a flag it does not know)."""
    import train
    try:
        return {"argv": " ".join(argv), "epochs": train.parse_args(argv[1:]).epochs}
    except SystemExit as stop:
        raise CaseFailed(f"train.py rejects {' '.join(argv[1:])} (exit {stop.code})") from None


def resume_commands(r: Run) -> list[list[str]]:
    """One epoch in fp16 (GradScaler state saved), then ``--resume`` from its last.pth to epoch 2."""
    first = train_argv(r, "resume", "--epochs", "1", "--precision", "fp16")
    second = train_argv(r, "resume", "--epochs", "2", "--precision", "fp16",
                        "--resume", str(r.work / "resume" / "last.pth"))
    return [first, second]


def resume_run(r: Run) -> dict:
    """Both train.py runs exit 0 and leave last.pth; log.csv (if written) holds two epochs."""
    details = {}
    for i, argv in enumerate(resume_commands(r), 1):
        rc, output = run_command(r, f"train-resume {i}", [sys.executable, *argv])
        details[f"run{i}"] = {"exit": rc, "last_line": output.strip().splitlines()[-1:] if output.strip() else []}
        check(rc == 0, f"train.py run {i} exited {rc}; see commands.log")
        check((r.work / "resume" / "last.pth").exists(), f"no last.pth after run {i}")
    log = r.work / "resume" / "log.csv"
    if log.exists():
        details["log_rows"] = len(log.read_text().strip().splitlines()) - 1
        check(details["log_rows"] == 2, f"log.csv has {details['log_rows']} epochs after the resume, not 2")
    return details


def resume_dry(r: Run) -> dict:
    return {f"run{i}": parsed_train_flags(argv) for i, argv in enumerate(resume_commands(r), 1)}


def torchrun_train_argv(r: Run) -> list[str]:
    return torchrun(*train_argv(r, "torchrun", "--epochs", "1"))


def torchrun_train_run(r: Run) -> dict:
    rc, output = run_command(r, "torchrun-train", torchrun_train_argv(r))
    check(rc == 0, f"torchrun train.py exited {rc}; see commands.log")
    return {"exit": rc, "last_line": output.strip().splitlines()[-1:],
            "note": "train.py decides whether one process joins a process group; torchrun-nccl checks NCCL itself"}


def torchrun_train_dry(r: Run) -> dict:
    argv = torchrun_train_argv(r)
    check(importlib.util.find_spec("torch.distributed.run") is not None, "torch.distributed.run is missing")
    return parsed_train_flags(argv[argv.index("train.py"):])


def nccl_argv(r: Run) -> list[str]:
    return torchrun(str(Path(__file__).resolve()), "--nccl-worker", str(r.work / "nccl.json"))


def nccl_run(r: Run) -> dict:
    rc, _ = run_command(r, "torchrun-nccl", nccl_argv(r))
    check(rc == 0, f"the NCCL worker exited {rc}; see commands.log")
    details = json.loads((r.work / "nccl.json").read_text())
    check(details["backend"] == "nccl" and details["all_reduce_ok"], f"NCCL check failed: {details}")
    return details


def nccl_dry(r: Run) -> dict:
    import torch.distributed as dist
    return {"argv": " ".join(nccl_argv(r)), "distributed_available": dist.is_available(),
            "nccl_built": dist.is_available() and dist.is_nccl_available()}


def nccl_worker(result: str) -> None:
    """Under torchrun: join an NCCL group, train ``max_former_tiny`` two steps under DDP, all-reduce."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("nccl")
    local = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local)
    device = torch.device("cuda", local)
    case = ModelCase("max_former_tiny", 8, event=True)
    model = DistributedDataParallel(case.build(device), device_ids=[local])
    x, y = case.batch_for(model.module, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    losses = [train_step(model, x, y, optimizer, scaler, None, no_reset).item() for _ in range(2)]
    total = torch.full((1,), float(dist.get_rank() + 1), device=device)
    dist.all_reduce(total)
    world = dist.get_world_size()
    out = {"backend": dist.get_backend(), "world": world, "losses": losses,
           "all_reduce_ok": total.item() == world * (world + 1) / 2}
    dist.barrier()
    dist.destroy_process_group()
    if local == 0:
        Path(result).write_text(json.dumps(out))


# --- bandwidth

BANDWIDTH_SHAPES = ((4, 2 ** 25), (16, 2 ** 23))


def cuda_ms(fn: Callable[[], object], repeats: int = 20, warmup: int = 3) -> float:
    """Median milliseconds of ``fn`` on the current CUDA stream (CUDA events)."""
    times = []
    for i in range(warmup + repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def kernel_timing(neuron: nn.Module, reset: Callable[[nn.Module], None], x: torch.Tensor,
                  grad: torch.Tensor) -> tuple[float, float]:
    """Median milliseconds of a training forward of ``neuron`` on ``x`` and of its backward."""
    def forward() -> torch.Tensor:
        spikes = neuron(x)
        reset(neuron)
        return spikes

    spikes = forward()
    return cuda_ms(forward), cuda_ms(lambda: torch.autograd.grad(spikes, x, grad, retain_graph=True))


def bandwidth_run(r: Run) -> dict:
    """Achieved bandwidth of the neuron kernels, against a device copy and the datasheet peak. An
    error of the authors' kernel is recorded (``authors_error``) without losing our rows."""
    name = torch.cuda.get_device_name(0)
    peak = peak_bandwidth(name)
    src = torch.empty(2 ** 28, device=r.device)
    dst = torch.empty_like(src)
    copy = 2 * src.numel() * 4 / (cuda_ms(lambda: dst.copy_(src)) / 1e3)
    del src, dst
    rows, details = [], {"gpu": name, "peak_gb_s": None if peak is None else peak / GB, "copy_gb_s": copy / GB,
                         "authors_neuron": r.authors_note,
                         "note": "bytes counted as 6 float32 tensors per forward + backward for both variants"}
    for T, n in BANDWIDTH_SHAPES:
        x = torch.randn(T, n, device=r.device).mul_(1.5).add_(0.4).requires_grad_(True)
        grad = torch.randn_like(x)
        nbytes = 3 * x.numel() * 4  # forward: read X, write S and H; backward: read dL/dS and H, write dL/dX
        variants: dict[str, tuple[Callable[[], nn.Module], Callable[[nn.Module], None]]] = {
            "ours triton": (lambda: neurons.LIF(backend="triton"), no_reset)}
        if r.authors is not None and "authors_error" not in details:
            authors = r.authors
            variants["sj-cupy"] = (lambda: authors.node(tau=2.0, detach_reset=True, backend="cupy"), authors.reset_net)
        for label, (build, reset) in variants.items():
            try:
                fwd, bwd = kernel_timing(build(), reset, x, grad)
            except Exception as err:  # the authors' kernel on this CuPy/CUDA; ours must not fail
                if label != "sj-cupy":
                    raise
                details["authors_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
                continue
            both = 2 * nbytes / (fwd + bwd) * 1e3  # bytes/s over forward + backward
            rows.append({"shape": [T, n], "variant": label, "forward_ms": fwd, "backward_ms": bwd,
                         "forward_gb_s": nbytes / fwd / 1e6, "backward_gb_s": nbytes / bwd / 1e6,
                         "of_copy": both / copy, "of_peak": None if peak is None else both / peak})
        del x, grad
    return {**details, "rows": rows}


def bandwidth_dry(r: Run) -> dict:
    check(importlib.util.find_spec("triton") is not None, "triton is not importable")
    lif = neurons.LIF(backend="triton")
    return {"shapes": [list(s) for s in BANDWIDTH_SHAPES], "neuron": repr(lif), "authors_neuron": r.authors_note,
            "peak_table": {key: bw / GB for key, bw in PEAK_BANDWIDTH}}


# --- benchmarks

def bench_case(case: ModelCase, precision: str, variant: str) -> Case:
    """Training-step time and peak memory of one workload with our neurons or the authors'."""
    dtype = PRECISIONS[precision]
    estimate = {1: 10, 4: 20}.get(case.T, 12 if not case.event else 15)

    def run(r: Run) -> dict:
        if variant == "sj-cupy" and r.authors is None:
            raise SkipCase(r.authors_note)
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        model = case.build(r.device).train()
        reset = no_reset
        if variant == "sj-cupy":
            r.authors.swap_into(model)
            reset = r.authors.reset_net
        x, y = case.batch_for(model, r.device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
        seconds = []
        try:
            for i in range(r.args.warmup + r.args.repeats):
                torch.cuda.synchronize()
                start = time.perf_counter()
                train_step(model, x, y, optimizer, scaler, dtype, reset)
                torch.cuda.synchronize()
                if i >= r.args.warmup:
                    seconds.append(time.perf_counter() - start)
        except torch.OutOfMemoryError as err:  # a result, not a bug: this workload does not fit
            raise SkipCase(f"does not fit: out of memory ({str(err).splitlines()[0][:160]})") from None
        details = {"workload": case.label, "precision": precision, "variant": variant,
                   "s_per_step": statistics.median(seconds), "steps_s": seconds,
                   "images_per_s": case.batch / statistics.median(seconds),
                   "peak_allocated_gb": (torch.cuda.max_memory_allocated() - base) / GB,
                   "peak_reserved_gb": torch.cuda.max_memory_reserved() / GB}
        del model, optimizer, x, y
        return details

    def dry(r: Run) -> dict:
        details = {**meta_check(case), "precision": precision, "variant": variant}
        if variant == "sj-cupy":
            model = case.build("meta")
            details["lif_dynamics"] = sorted({repr(m.dynamics) for m in lif_layers(model)})  # what the swap reads
            if r.authors is None:
                raise SkipCase(r.authors_note, details)
            details["swapped"] = r.authors.swap_into(model)
        return details

    return Case(f"bench:{case.label}:{precision}:{variant}", "benchmark", estimate, run, dry)


def all_cases() -> list[Case]:
    """Every case, in the order they run."""
    cases = [Case("environment", "environment", 0, cuda_env, cuda_env)]
    cases += [exact_case(c) for c in EXACT]
    cases += [steps_case(c, p) for c in FAMILIES for p in ("fp16", "bf16")]
    cases += [Case("pytest-cuda", "tests", 75, cuda_tests_run, cuda_tests_dry),
              Case("train-resume", "runs", 45, resume_run, resume_dry),
              Case("torchrun-train", "distributed", 30, torchrun_train_run, torchrun_train_dry),
              Case("torchrun-nccl", "distributed", 25, nccl_run, nccl_dry),
              Case("bandwidth", "bandwidth", 15, bandwidth_run, bandwidth_dry)]
    cases += [bench_case(c, p, v) for p in ("fp16", "fp32") for c in WORKLOADS for v in ("ours", "sj-cupy")]
    return cases


# ----------------------------------------------------------------------------- running and reporting

def run_case(r: Run, case: Case) -> dict:
    """Run (or dry-run) one case within the budget; returns its result record."""
    result = {"name": case.name, "group": case.group, "estimate_s": case.estimate_s, "seconds": 0.0,
              "note": "", "details": {}}
    need = 0.0 if r.dry or case.name == "environment" else case.estimate_s
    if case.name != "environment" and r.remaining <= need:
        left = f"the --budget-s {r.args.budget_s:.0f} is spent" if r.dry else \
            f"{max(r.remaining, 0):.0f} s of --budget-s {r.args.budget_s:.0f} left, the case needs about {need:.0f} s"
        result.update(status="skip", note=f"skipped: {left}")
        return result
    started = time.monotonic()
    try:
        with time_limit(r.remaining) if case.name != "environment" else nullcontext():
            result["details"] = (case.dry if r.dry else case.run)(r)
        result["status"] = "planned" if r.dry else "ok"
    except SkipCase as skip:
        result.update(status="skip", note=f"skipped: {skip}", details=skip.details)
    except (CaseFailed, BudgetExceeded) as err:
        result.update(status="fail", note=str(err))
    except Exception as err:  # a broken case is reported; the others still run
        result.update(status="fail", note=f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}")
    result["seconds"] = time.monotonic() - started
    if not r.dry:
        gc.collect()
        torch.cuda.empty_cache()
    return result


def bench_pairs(results: list[dict]) -> list[dict]:
    """Ours against the authors' neuron per workload and precision, from the same run."""
    found = {(d["workload"], d["precision"], d["variant"]): d
             for d in (res["details"] for res in results if res["group"] == "benchmark" and res["status"] == "ok")}
    pairs = []
    for case in WORKLOADS:
        for precision in ("fp16", "fp32"):
            ours, sj = found.get((case.label, precision, "ours")), found.get((case.label, precision, "sj-cupy"))
            if ours is None:
                continue
            pair = {"workload": case.label, "precision": precision, "ours_s": ours["s_per_step"],
                    "ours_gb": ours["peak_allocated_gb"], "sj_s": None, "sj_gb": None, "speedup": None,
                    "memory_ratio": None}
            if sj is not None:
                pair.update(sj_s=sj["s_per_step"], sj_gb=sj["peak_allocated_gb"],
                            speedup=sj["s_per_step"] / ours["s_per_step"],
                            memory_ratio=ours["peak_allocated_gb"] / sj["peak_allocated_gb"])
            pairs.append(pair)
    return pairs


def cell(value: object) -> str:
    """One Markdown table cell: 4 significant digits, "-" for missing values."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value).replace("|", "/")


def markdown_table(headers: list[str], rows: list[list[object]]) -> list[str]:
    """The lines of a Markdown table."""
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
            *("| " + " | ".join(cell(c) for c in row) + " |" for row in rows)]


def markdown(report: dict) -> str:
    """The human-readable report: cases, benchmark pairs, bandwidth, exactness, the names relied on."""
    env = report["environment"]
    lines = [f"# CUDA check ({report['mode']})", "", *(f"- {line}" for line in env.get("header", [])),
             f"- GPU: {env.get('gpu', 'none (dry run)')}; torch {env.get('torch')} (CUDA {env.get('torch_cuda')}), "
             f"triton {env.get('triton')}, spikingjelly {env.get('spikingjelly')}; authors' neuron: "
             f"{env.get('authors_neuron')}",
             f"- budget {report['budget_s']:.0f} s, used {report['elapsed_s']:.0f} s; "
             + ", ".join(f"{k}: {v}" for k, v in report["summary"].items()), "", "## Cases", ""]
    lines += markdown_table(["case", "status", "seconds", "note"],
                            [[c["name"], c["status"], f"{c['seconds']:.1f}", c["note"]] for c in report["cases"]])
    if report["benchmarks"]:
        lines += ["", "## Training step, ours vs spikingjelly 0.0.0.0.12 CuPy neuron (same run)", "",
                  f"Paper Table 8: {TABLE8['model']} T={TABLE8['T']} batch {TABLE8['batch']}: "
                  f"{TABLE8['s_per_iter']} s/iter, {TABLE8['memory_gb']} GB on an {TABLE8['gpu']}. "
                  "Peak = torch.cuda.max_memory_allocated.", ""]
        lines += markdown_table(["workload", "precision", "ours s/step", "sj s/step", "speed-up (sj/ours)",
                                 "ours peak GB", "sj peak GB", "memory ours/sj"],
                                [[p["workload"], p["precision"], p["ours_s"], p["sj_s"], p["speedup"], p["ours_gb"],
                                  p["sj_gb"], p["memory_ratio"]] for p in report["benchmarks"]])
    for c in report["cases"]:
        if c["name"] == "bandwidth" and c["status"] == "ok":
            d = c["details"]
            lines += ["", f"## Neuron kernels' bandwidth (copy {d['copy_gb_s']:.0f} GB/s, peak {cell(d['peak_gb_s'])} "
                          "GB/s)", ""]
            lines += markdown_table(["shape", "variant", "fwd ms", "bwd ms", "fwd GB/s", "bwd GB/s", "of copy",
                                     "of peak"], [[r["shape"], r["variant"], r["forward_ms"], r["backward_ms"],
                                                   r["forward_gb_s"], r["backward_gb_s"], r["of_copy"], r["of_peak"]]
                                                  for r in d["rows"]])
            if d.get("authors_error"):
                lines += ["", f"spikingjelly's CuPy kernel failed: {d['authors_error']}"]
    exact = [c for c in report["cases"] if c["group"] == "exactness" and c["status"] in ("ok", "fail")
             and "layers" in c["details"]]
    if exact:
        lines += ["", "## Triton vs fused on real shapes", ""]
        lines += markdown_table(["case", "layers", "spikes equal", "max abs grad diff"],
                                [[c["name"], c["details"]["layers"], not c["details"]["spikes_unequal_layers"],
                                  c["details"]["max_abs_grad_diff"]] for c in exact])
    lines += ["", "## Names relied on", "", *(f"- {name}" for name in report["imports"]), ""]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options; bad input exits 2 with one line (argparse's ``error``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/cuda-check", help="folder for cuda_check.json, cuda_check.md and "
                                                                 "commands.log (default: runs/cuda-check)")
    parser.add_argument("--dry-run", action="store_true", help="build every case on CPU, run nothing on CUDA")
    parser.add_argument("--budget-s", type=float, default=780.0,
                        help="total seconds for the run; cases that no longer fit are skipped (default: 780)")
    parser.add_argument("--cases", nargs="+", metavar="PATTERN", help="run only the cases matching these glob "
                                                                      "patterns, e.g. 'bench:*' (environment always runs)")
    parser.add_argument("--repeats", type=int, default=3, help="timed training steps per benchmark (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed training steps before them")
    parser.add_argument("--nccl-worker", metavar="RESULT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.budget_s <= 0 and not args.dry_run:
        parser.error(f"--budget-s must be positive, got {args.budget_s}")
    if args.repeats < 1 or args.warmup < 0:
        parser.error(f"--repeats must be >= 1 and --warmup >= 0, got {args.repeats} and {args.warmup}")
    names = [c.name for c in all_cases()]
    for pattern in args.cases or []:
        if not fnmatch.filter(names, pattern):
            parser.error(f"--cases {pattern!r} matches no case; cases: {', '.join(names)}")
    if not args.dry_run and not args.nccl_worker and not torch.cuda.is_available():
        parser.error("torch sees no CUDA device; on a machine without a GPU run with --dry-run")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run (or dry-run) the selected cases and write the report; returns the exit status."""
    args = parse_args(argv)
    if args.nccl_worker:
        nccl_worker(args.nccl_worker)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    with tempfile.TemporaryDirectory(prefix="cuda-check-") as work:
        run = Run(args, Path(work), time.monotonic() + args.budget_s)
        run.authors, run.authors_note = authors_neuron()
        cases = [c for c in all_cases() if c.name == "environment"
                 or not args.cases or any(fnmatch.fnmatch(c.name, p) for p in args.cases)]
        results = []
        for case in cases:
            results.append(run_case(run, case))
            res = results[-1]
            print(f"{res['status']:>7}  {res['name']}  {res['seconds']:.1f} s  {res['note']}", flush=True)
        (out / "commands.log").write_text("\n".join(run.log))
    summary: dict[str, int] = {}
    for res in results:
        summary[res["status"]] = summary.get(res["status"], 0) + 1
    report = {"schema": SCHEMA, "mode": "dry-run" if args.dry_run else "cuda", "started": started.isoformat(),
              "budget_s": args.budget_s, "elapsed_s": (datetime.datetime.now(datetime.timezone.utc) - started)
              .total_seconds(), "estimated_gpu_s": sum(c.estimate_s for c in cases),
              "environment": results[0]["details"], "imports": list(RELIED_ON), "summary": summary,
              "cases": results, "benchmarks": bench_pairs(results),
              "exit_code": 1 if summary.get("fail") else 0}
    (out / "cuda_check.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "cuda_check.md").write_text(markdown(report))
    print(f"{summary}; report: {out / 'cuda_check.md'}")
    return report["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
