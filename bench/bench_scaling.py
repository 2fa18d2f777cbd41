"""How a training step's time and peak memory grow with the time steps T and with the batch size.

    python bench/bench_scaling.py                               # max_former_cifar10, CPU defaults
    python bench/bench_scaling.py --model max_former_dvsgesture --batch-size 1 --batches 1 2
    python bench/bench_scaling.py --device cuda --batches 32 64 128 256 512 --amp

A spiking network runs every layer T times, so a training step should cost ``a + b*T`` in time and
memory, and likewise in the batch size. For each sweep the table gives seconds per step (median of
``--repeats`` interleaved rounds), peak memory (a fresh process per point, see ``_common``), and
each point's cost per unit (time/T, memory/T) relative to the first point; a least-squares line
through the points gives the slope, the intercept and R^2 (1 = perfectly linear). On CPU the memory
line is extrapolated to the memory available now (``MemAvailable``) to say where a step would run out;
points that do not fit are reported as ``OOM``.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MIB, Config, Workload, median_seconds, parse_args, peak_memory, table  # noqa: E402


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least-squares ``y = a + b*x``: returns ``(a, b, r2)``."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    a = my - b * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys))
    return a, b, 1 - ss_res / ss_tot if ss_tot else 1.0


def available_bytes() -> int | None:
    """``MemAvailable`` from /proc/meminfo, or None where there is no such file."""
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return None


def sweep(base: Config, key: str, values: list[int], args: argparse.Namespace) -> dict[int, dict[str, float]]:
    """Seconds per training step and peak bytes at every value of ``key`` (``T`` or ``batch``)."""
    configs = {v: replace(base, **{key: v}) for v in values}
    out: dict[int, dict[str, float]] = {v: {} for v in values}
    if not args.no_memory:
        for v, cfg in configs.items():
            mem = peak_memory(cfg)
            out[v]["mem"] = mem.get("train", float("nan"))
            if "oom" in mem:
                out[v]["oom"] = 1.0
    fits = [v for v in values if "oom" not in out[v]]
    works = {v: Workload(configs[v]) for v in fits}
    seconds = median_seconds({v: w.train_step for v, w in works.items()}, args.repeats, args.warmup,
                             next(iter(works.values())).sync if works else (lambda: None), desc=f"{key} sweep")
    for v, s in seconds.items():
        out[v]["time"] = s
    return out


def report(key: str, res: dict[int, dict[str, float]], memory: bool) -> str:
    """Table of one sweep plus the fitted lines."""
    points = [v for v in res if "time" in res[v]]
    headers = [key, "s/step", f"time/{key} (rel.)"] + (["peak MiB", f"mem/{key} (rel.)"] if memory else [])
    rows = []
    for v in res:
        if v not in points:
            rows.append([v, "OOM", "", *(["OOM", ""] if memory else [])])
            continue
        r, first = res[v], res[points[0]]
        row = [v, r["time"], (r["time"] / v) / (first["time"] / points[0])]
        if memory:
            row += [r["mem"] / MIB, (r["mem"] / v) / (first["mem"] / points[0])]
        rows.append(row)
    lines = [table(rows, headers)]
    if len(points) >= 2:
        a, b, r2 = fit_line(points, [res[v]["time"] for v in points])
        lines.append(f"time  = {a:.3f} s + {b:.3f} s x {key}   (R^2 {r2:.4f})")
        if memory:
            a, b, r2 = fit_line(points, [res[v]["mem"] / MIB for v in points])
            lines.append(f"memory = {a:.0f} MiB + {b:.1f} MiB x {key}   (R^2 {r2:.4f})")
            avail = available_bytes()
            if avail and b > 0:
                lines.append(f"memory available now {avail / MIB:.0f} MiB: a step runs out at about {key} = "
                             f"{(avail / MIB - a) / b:.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="max_former_cifar10", help="zoo name (default max_former_cifar10)")
    parser.add_argument("--Ts", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="time steps of the T sweep")
    parser.add_argument("--batch-size", type=int, default=8, help="batch size of the T sweep (default 8)")
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 8, 16, 32],
                        help="batch sizes of the batch sweep, at the model's own T (default 4 8 16 32)")
    parser.add_argument("--spikingjelly", action="store_true", help="swap spikingjelly's LIFNode in for our neurons")
    parser.add_argument("--checkpoint-stages", action="store_true", help="activation checkpointing per stage")
    args, _ = parse_args(parser, argv)
    base = Config(args.model, args.batch_size, device=args.device, amp=args.amp, spikingjelly=args.spikingjelly,
                  neuron_backend=args.neuron_backend, checkpoint_stages=args.checkpoint_stages, threads=args.threads)
    print(f"model {args.model}, {'spikingjelly LIFNode' if args.spikingjelly else 'our neurons'} "
          f"(backend {args.neuron_backend}), amp={args.amp}, checkpoint_stages={args.checkpoint_stages}; "
          f"training step, median of {args.repeats} rounds after {args.warmup} warm-up\n", flush=True)
    memory = not args.no_memory
    print(f"T sweep at batch {args.batch_size}:")
    print(report("T", sweep(base, "T", args.Ts, args), memory), "\n", flush=True)
    print("batch sweep at the model's own T:")
    print(report("batch", sweep(replace(base, T=None), "batch", args.batches, args), memory))


if __name__ == "__main__":
    main()
