"""The models' 3x3 max-pools: ``kernels.MaxPool`` (channels_last on CPU, two bytes per output kept)
against ``nn.MaxPool2d`` in NCHW (autograd's own), side by side on the shapes the zoo models really pool.

    python bench/bench_maxpool.py [--models max_former_cifar10 max_former_dvsgesture] [--repeats 7] [--threads 1]

Each model runs one inference forward at bench_models.py's CPU batch to collect the input shape and
stride of every max-pool. Per shape, ``forward`` is a training forward (input requiring grad) and
``fwd+bwd`` adds the backward; the best of ``--repeats`` rounds, both implementations interleaved
round by round. Outputs and gradients are checked equal first (the bench refuses to time a mismatch).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, table  # noqa: E402
from bench_models import CPU_BATCH  # noqa: E402
from bench_neurons import best_ms  # noqa: E402
import kernels  # noqa: E402
import zoo  # noqa: E402


def pool_shapes(name: str, batch: int) -> list[tuple[tuple[int, ...], int]]:
    """(input shape, stride) of every 3x3 max-pool of zoo model ``name`` on a batch of ``batch``."""
    model = zoo.create_model(name).eval()
    seen: list[tuple[tuple[int, ...], int]] = []
    hooks = [m.register_forward_pre_hook(lambda m, args: seen.append((tuple(args[0].shape), m.stride)))
             for m in model.modules() if isinstance(m, kernels.MaxPool)]
    c = model.cfg
    x = torch.zeros(batch, c.T, c.in_channels, c.img_size, c.img_size) if model.is_event else \
        torch.zeros(batch, c.in_channels, c.img_size, c.img_size)
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return seen


def measure(shape: tuple[int, ...], stride: int, repeats: int) -> dict[str, float]:
    """Best ms of forward and forward+backward for ours and NCHW autograd's, after checking they agree."""
    x = torch.randn(shape).round().requires_grad_()  # rounded: ties, as after BN of binary inputs
    pools = {"ours": kernels.MaxPool(stride), "NCHW": torch.nn.MaxPool2d(3, stride, 1)}
    grad = torch.randn_like(pools["NCHW"](x))
    outs = {k: pool(x) for k, pool in pools.items()}
    grads = {k: torch.autograd.grad(y, x, grad)[0] for k, y in outs.items()}
    if not (torch.equal(outs["ours"], outs["NCHW"]) and torch.equal(grads["ours"], grads["NCHW"])):
        raise SystemExit(f"kernels.MaxPool differs from nn.MaxPool2d on {shape}, stride {stride}")
    jobs = {f"{k} forward": (lambda p=p: p(x)) for k, p in pools.items()}
    jobs.update({f"{k} fwd+bwd": (lambda p=p: torch.autograd.grad(p(x), x, grad)) for k, p in pools.items()})
    return best_ms(jobs, repeats, lambda: None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["max_former_cifar10", "max_former_dvsgesture"],
                        help="zoo names (default: the CIFAR Max-Former and the DVS128 Gesture model)")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds per shape; the best counts (default 7)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(header(torch.device("cpu")), "\n", flush=True)
    rows = []
    for name in args.models:
        for shape, stride in dict.fromkeys(pool_shapes(name, CPU_BATCH.get(name, 8))):
            ms = measure(shape, stride, args.repeats)
            rows.append([name, "x".join(map(str, shape)), stride,
                         *(ms[f"{k} {job}"] for job in ("forward", "fwd+bwd") for k in ("NCHW", "ours")),
                         ms["NCHW fwd+bwd"] / ms["ours fwd+bwd"]])
    print(table(rows, ["model", "input", "stride", "NCHW fwd ms", "ours fwd ms", "NCHW fwd+bwd ms",
                       "ours fwd+bwd ms", "speed-up (fwd+bwd)"]))


if __name__ == "__main__":
    main()
