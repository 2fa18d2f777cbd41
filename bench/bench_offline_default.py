"""Does `python train.py` (the offline default) reach 95% test top-1 within 5 minutes on 2 CPU cores?

    python bench/bench_offline_default.py                      # train.py's defaults on 2 threads
    python bench/bench_offline_default.py -- --epochs 8        # flags after -- go to train.py

The digits-dvs events are simulated first (once, then cached; not timed). Then `train.main()` runs
with train.py's defaults and the script prints the accuracies and the wall time next to the goal,
with the CPU time and the load average, since a shared machine stretches the wall time.
"""
import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train  # noqa: E402
from data import build_datasets  # noqa: E402

GOAL_TOP1, GOAL_SECONDS = 95.0, 300.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (the goal is for 2 cores)")
    p.add_argument("--data-dir", help="dataset folder passed to train.py (default: data.py's)")
    p.add_argument("train_flags", nargs=argparse.REMAINDER, help="flags for train.py, after --")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    flags = (["--data-dir", args.data_dir] if args.data_dir else []) + [f for f in args.train_flags if f != "--"]
    build_datasets("digits-dvs", data_dir=args.data_dir)

    load_before = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    summary = train.main(flags)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu

    print(f"\noffline default: python train.py {' '.join(flags)}  ({args.threads} threads, "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, {os.cpu_count()} CPUs)")
    print(f"{'':28}{'measured':>10}{'goal':>10}{'ratio':>8}")
    for name, value, goal in (("final test top-1 (%)", summary["final_acc1"], GOAL_TOP1),
                              ("best test top-1 (%)", summary["best_acc1"], GOAL_TOP1),
                              ("wall time (s)", wall, GOAL_SECONDS)):
        print(f"{name:28}{value:10.2f}{goal:10.1f}{value / goal:8.2f}")
    print(f"{'CPU time, all threads (s)':28}{cpu:10.1f}")


if __name__ == "__main__":
    main()
