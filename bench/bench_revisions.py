"""Training-step time of one model at two versions of the code, side by side: the working tree and
a git revision (for goals such as "no slower than before").

    python bench/bench_revisions.py --against 7322f99 --models max_former_dvsgesture --rounds 3

The revision is checked out into a temporary git worktree (removed afterwards). Each round runs one
fresh process per version, alternating, so that drifts in the machine's load reach both. A process
builds the zoo model with seed 0, takes one warm-up step, then ``--steps`` timed training steps
(forward, cross-entropy, backward, AdamW) on one random batch, with one torch thread. The table gives
the median seconds per step of each version, their ratio, and each version's last loss: equal losses
show that the two compute the same thing.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(root: str, name: str, batch: int, steps: int) -> None:
    """Run in a fresh process: time ``steps`` training steps of ``name`` with the code under ``root``; print JSON."""
    sys.path.insert(0, root)
    import torch
    try:
        from zoo import create_model
    except ImportError:  # a revision from before zoo.py, whose model list was in maxformer.py
        from maxformer import create_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_model(name).train()
    c = model.cfg
    if c.in_channels == 2:  # event models read frames [B, T, C, H, W] (older revisions lack model.is_event)
        x = torch.rand(batch, c.T, c.in_channels, c.img_size, c.img_size).round()
    else:
        x = torch.randn(batch, c.in_channels, c.img_size, c.img_size)
    y = torch.randint(0, c.num_classes, (batch,))
    optimizer = torch.optim.AdamW(model.parameters())

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    step()
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = step()
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"seconds": seconds, "loss": loss}))


def run_child(root: Path, name: str, batch: int, steps: int) -> dict:
    """One measurement in a fresh process; exits with the child's error if it fails."""
    out = subprocess.run([sys.executable, __file__, "--child", str(root), name, str(batch), str(steps)],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if out.returncode:
        raise SystemExit(f"measuring {name} under {root} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(other: Path, label: str, name: str, batch: int, rounds: int, steps: int) -> dict[str, list[dict]]:
    """Per version (this tree, and ``label`` for the code under ``other``) the ``rounds`` measurements
    of ``name``, the two versions alternating round by round."""
    results: dict[str, list[dict]] = {"this tree": [], label: []}
    for _ in range(rounds):
        for version, root in (("this tree", ROOT), (label, other)):
            results[version].append(run_child(root, name, batch, steps))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", required=True, help="git revision to compare the working tree with")
    parser.add_argument("--models", nargs="+", default=["max_former_cifar10", "max_former_dvsgesture"],
                        help="zoo names (default: the CIFAR Max-Former and the DVS128 Gesture model)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="batch for every model (default: bench_models.py's CPU batch per model)")
    parser.add_argument("--rounds", type=int, default=3, help="processes per version and model (default 3)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per process (default 3)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "bench"))
    from _common import header, table
    from bench_models import CPU_BATCH
    import torch

    torch.set_num_threads(1)  # what the measuring processes use, so that the header says so
    print(header(torch.device("cpu")), f"\nworking tree against {args.against}; {args.rounds} rounds of "
          f"{args.steps} steps, 1 thread\n", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "revision"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(other), args.against],
                       check=True, capture_output=True)
        try:
            for name in args.models:
                batch = args.batch_size or CPU_BATCH.get(name, 8)
                results = compare(other, args.against, name, batch, args.rounds, args.steps)
                medians = {k: statistics.median(s for r in v for s in r["seconds"]) for k, v in results.items()}
                for label, runs in results.items():
                    rows.append([name, batch, label, medians[label], f"{runs[-1]['loss']:.6f}"])
                rows.append([name, batch, "this / revision", medians["this tree"] / medians[args.against], ""])
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)], capture_output=True)
    print(table(rows, ["model", "batch", "version", "train s/step (median)", "last loss"]))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
