"""Speed and memory of our LIF backends against spikingjelly's multi-step LIFNode, side by side.

    python bench/bench_neurons.py [--repeats 7] [--threads N]

For each shape, each implementation runs forward (input requiring grad, as in training) and
forward+backward; the table shows the best of ``--repeats`` runs after a warm-up, all runs
interleaved round by round (the minimum is the least disturbed by other processes). The memory floor is the time to move the bytes a fused
kernel must move (forward: read X, write S and H; backward: read H and dL/dS, write dL/dX), at the
bandwidth of a plain copy of a tensor of the same size. ``saved`` is what autograd keeps for the
backward. The ``compiled`` backend's one-off compile time is reported separately.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kernels import saved_bytes  # noqa: E402
from neurons import Dynamics, neuron_sequence  # noqa: E402

SHAPES = ((4, 64, 384, 8, 8), (16, 4, 64, 32, 32))


def best_ms(jobs: dict, repeats: int, sync) -> dict:
    """Best wall time in ms of each job (name -> function), the jobs interleaved round by round so
    that load from other processes hits all of them alike."""
    times = {name: [] for name in jobs}
    for _ in tqdm(range(repeats), desc="timing rounds", file=sys.stderr, leave=False):
        for name, job in jobs.items():
            start = time.perf_counter()
            job()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) * 1e3 for name, t in times.items()}


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return models[0] if models else platform.processor() or "unknown CPU"


def implementations(device: torch.device) -> dict:
    """Name -> function of a ``[T, ...]`` input returning spikes; paper defaults (tau 2, hard reset)."""
    d = Dynamics()
    impls = {f"ours {b}": (lambda x, b=b: neuron_sequence(x, d, b)) for b in ("torch", "fused", "compiled")}
    if device.type == "cuda":
        impls["ours triton"] = lambda x: neuron_sequence(x, d, "triton")
    try:
        from spikingjelly.activation_based.neuron import LIFNode
    except ImportError:
        print("spikingjelly is not installed: its rows are left out", file=sys.stderr)
        return impls
    node = LIFNode(tau=2.0, detach_reset=True, step_mode="m").to(device)

    def spikingjelly(x):
        node.reset()
        return node(x)

    impls["spikingjelly LIFNode"] = spikingjelly
    return impls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per measurement; the best counts")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads for torch")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{cpu_name()}, {args.threads} threads"
    print(f"# {datetime.date.today()} | {name} | python {platform.python_version()} | torch {torch.__version__} | "
          f"spikingjelly {version('spikingjelly')} | best of {args.repeats}")
    impls = implementations(device)
    for shape in SHAPES:
        x = (torch.randn(shape, device=device) + 0.5).requires_grad_(True)
        grad = torch.randn(shape, device=device)
        copy = torch.empty_like(x)
        jobs = {"copy": lambda: copy.copy_(x.detach())}
        for label, fn in impls.items():
            start = time.perf_counter()
            fn(x).backward(grad)  # warm-up; compiles the ``compiled`` backend
            sync()
            if label == "ours compiled":
                print(f"(ours compiled: first call incl. compile {time.perf_counter() - start:.1f} s)", file=sys.stderr)

            def train(fn=fn):
                x.grad = None
                fn(x).backward(grad)

            jobs[label, "fwd"], jobs[label, "train"] = (lambda fn=fn: fn(x)), train
        ms = best_ms(jobs, args.repeats, sync)
        bandwidth = 2 * x.numel() * x.element_size() / (ms["copy"] * 1e-3)  # bytes/s, read + write
        floor_fwd = 3 * x.numel() * x.element_size() / bandwidth * 1e3
        floor_train = 6 * x.numel() * x.element_size() / bandwidth * 1e3
        print(f"\n## shape {list(shape)} ({x.numel() / 1e6:.1f} M elements); copy {bandwidth / 1e9:.1f} GB/s; "
              f"floor: forward {floor_fwd:.2f} ms, forward+backward {floor_train:.2f} ms")
        print(f"| {'implementation':22} | fwd ms | fwd+bwd ms | sj / this (fwd+bwd) | this / floor (fwd+bwd) | saved MB |")
        print(f"|{'-' * 24}|-------:|-----------:|--------------------:|-----------------------:|---------:|")
        rows = {label: (ms[label, "fwd"], ms[label, "train"], saved_bytes(fn, x) / 2 ** 20) for label, fn in impls.items()}
        reference = rows.get("spikingjelly LIFNode", (float("nan"),) * 2)[1]
        for label, (fwd, train, saved) in rows.items():
            print(f"| {label:22} | {fwd:6.2f} | {train:10.2f} | {reference / train:19.2f} | "
                  f"{train / floor_train:22.2f} | {saved:8.1f} |")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            for label, fn in impls.items():
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                fn(x).backward(grad)
                print(f"peak extra memory, {label}: {(torch.cuda.max_memory_allocated() - base) / 2 ** 20:.1f} MB")


if __name__ == "__main__":
    main()
