"""Where a training step's time goes: torch.profiler's self CPU time of one training step, grouped
by kind of operation, for our model and the authors' set-up (``authors.AuthorsNet``).

    python bench/profile_step.py --threads 1                              # max_former_cifar10dvs, batch 2
    python bench/profile_step.py --model max_former_cifar10 --batch-size 16 --threads 1

Each variant runs ``--warmup`` untimed steps, then ``--steps`` profiled ones, the variants taking turns.
Self time counts each operation without the operations it calls, so the groups add up to the step;
``GROUPS`` says which operation names go where (the first pattern that a name contains wins).
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Config, Workload, header, table  # noqa: E402

# group -> substrings of aten operation names, checked in this order
GROUPS = {
    "convolution (forward and backward)": ("conv",),
    "batch norm": ("batch_norm",),
    "max-pool": ("max_pool",),
    "attention products": ("bmm", "aten::mm", "matmul"),
    "copies and layout": ("copy_", "_to_copy", "clone", "contiguous", "cat", "stack"),
    "allocation": ("empty", "zeros", "full", "resize"),
}
OTHER = "elementwise and the rest (neurons, AdamW)"


def group_of(op: str) -> str:
    """The :data:`GROUPS` entry of an operation name, or :data:`OTHER`."""
    return next((g for g, patterns in GROUPS.items() if any(p in op for p in patterns)), OTHER)


def profile_steps(works: dict[str, Workload], steps: int) -> dict[str, dict[str, float]]:
    """Variant -> group -> self CPU seconds per training step."""
    totals: dict[str, dict[str, float]] = {v: defaultdict(float) for v in works}
    for _ in range(steps):
        for v, work in works.items():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                work.train_step()
            for event in prof.key_averages():
                totals[v][group_of(event.key)] += event.self_cpu_time_total / 1e6 / steps
    return {v: dict(t) for v, t in totals.items()}


def report(times: dict[str, dict[str, float]]) -> str:
    """Seconds per step and share of the step per group, a column pair per variant, then the total."""
    names = list(times)
    groups = [g for g in (*GROUPS, OTHER) if any(g in t for t in times.values())]
    totals = {v: sum(t.values()) for v, t in times.items()}
    rows = [[g, *(x for v in names for x in (times[v].get(g, 0.0), 100 * times[v].get(g, 0.0) / totals[v]))]
            for g in groups]
    rows.append(["total", *(x for v in names for x in (totals[v], 100.0))])
    headers = ["group", *(h for v in names for h in (f"{v} s/step", f"{v} %"))]
    ratios = [f"{v} / {names[0]} (profiled step time): {totals[v] / totals[names[0]]:.2f}" for v in names[1:]]
    return "\n".join([table(rows, headers), *ratios])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="max_former_cifar10dvs")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--steps", type=int, default=2, help="profiled steps per variant (default 2)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per variant first (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(header(torch.device("cpu")))
    print(f"model {args.model}, batch {args.batch_size}; self CPU time of one training step, mean of {args.steps}\n")
    works = {v: Workload(Config(args.model, args.batch_size, authors=v == "authors")) for v in ("ours", "authors")}
    for _ in range(args.warmup):
        for work in works.values():
            work.train_step()
    print(report(profile_steps(works, args.steps)))


if __name__ == "__main__":
    main()
