"""Training step and inference batch of whole models: our neurons against spikingjelly's LIFNode.

    python bench/bench_models.py                       # CPU defaults, a few minutes on 2 cores
    python bench/bench_models.py --device cuda --models max_former_10_768 --batch-size 32 --amp

For every model, two variants are built from the same zoo entry: ``ours`` (our neurons) and
``spikingjelly``, the authors' set-up computing the same function (every neuron replaced by
spikingjelly's multi-step ``LIFNode(tau=2, detach_reset=True)`` with the same threshold, autograd's
own max-pool, spikes saved in float like any activation; see ``_common.swap_in_spikingjelly``). Both
run the same jobs, interleaved round by round: one training step (forward, cross-entropy, backward,
AdamW), one inference batch, and one inference batch after ``model.fuse()`` (BN folded into
convolutions). Throughput is the median of ``--repeats`` rounds after ``--warmup``; peak memory is
measured once per variant in a fresh process (``_common`` explains how), and "saved" is what autograd
keeps for the backward of one training forward (``kernels.saved_bytes``). The last rows give
ours / spikingjelly ratios, all from the same run: speed-up (> 1 is faster) and memory (< 1 is less).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MIB, Config, Workload, median_seconds, parse_args, peak_memory, table  # noqa: E402

# Model -> CPU default batch size (CUDA default: 32). CIFAR batch 16, T=4; the event model T=16 at
# 128x128 and ImageNet 224x224 get small batches so that a CPU run takes minutes.
CPU_BATCH = {"max_former_cifar10": 16, "max_resnet18_cifar10": 16, "max_former_dvsgesture": 2, "max_former_10_384": 4}
VARIANTS = ("ours", "spikingjelly")


def measure_model(name: str, batch: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Seconds per job (``train``, ``infer``, ``fused``) and peak bytes (``train_mem``, ``infer_mem``)
    of both variants of one model; jobs of the two variants interleaved."""
    configs = {v: Config(name, batch, device=args.device, amp=args.amp, spikingjelly=v == "spikingjelly",
                         neuron_backend=args.neuron_backend, threads=args.threads) for v in VARIANTS}
    works = {v: Workload(c) for v, c in configs.items()}
    jobs = {}
    for v, w in works.items():
        jobs.update({(v, "train"): w.train_step, (v, "infer"): w.infer, (v, "fused"): w.infer_fused})
    sync = works["ours"].sync
    seconds = median_seconds(jobs, args.repeats, args.warmup, sync, desc=f"{name} b{batch}")
    out = {v: {job: seconds[(v, job)] for job in ("train", "infer", "fused")} for v in VARIANTS}
    for v, w in works.items():
        out[v]["saved"] = w.saved_bytes()
    del works, jobs
    if not args.no_memory:
        for v, cfg in configs.items():
            mem = peak_memory(cfg)
            out[v].update({"train_mem": mem.get("train", float("nan")), "infer_mem": mem.get("infer", float("nan"))})
    return out


def report(results: dict[tuple[str, int], dict[str, dict[str, float]]], memory: bool) -> str:
    """The table: images/s and peak MiB per model and variant, then the ratio rows."""
    headers = ["model", "batch", "variant", "train s/step", "train img/s", "infer img/s", "fused infer img/s",
               "saved MiB"]
    if memory:
        headers += ["train peak MiB", "infer peak MiB"]
    rows, ratios = [], []
    for (name, batch), res in results.items():
        for v in VARIANTS:
            r = res[v]
            row = [name, batch, v, r["train"], batch / r["train"], batch / r["infer"], batch / r["fused"],
                   r["saved"] / MIB]
            if memory:
                row += [r["train_mem"] / MIB, r["infer_mem"] / MIB]
            rows.append(row)
        ours, sj = res["ours"], res["spikingjelly"]
        ratio = [name, batch, "ours/sj", ours["train"] / sj["train"], sj["train"] / ours["train"],
                 sj["infer"] / ours["infer"], sj["fused"] / ours["fused"], ours["saved"] / sj["saved"]]
        if memory:
            ratio += [ours["train_mem"] / sj["train_mem"], ours["infer_mem"] / sj["infer_mem"]]
        ratios.append(ratio)
    note = ("ours/sj rows: s/step and memory columns are ours / spikingjelly's (< 1 is less); img/s columns "
            "are speed-ups, spikingjelly's time / ours (> 1 is faster).")
    return table(rows + ratios, headers) + "\n" + note


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(CPU_BATCH),
                        help=f"zoo names (default: {' '.join(CPU_BATCH)})")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"batch size for every model (default on CPU: {CPU_BATCH}; on CUDA: 32)")
    args, device = parse_args(parser, argv)
    print(f"jobs: median of {args.repeats} rounds after {args.warmup} warm-up; amp={args.amp}; "
          f"neuron backend {args.neuron_backend}\n", flush=True)
    results = {}
    for name in args.models:
        batch = args.batch_size or (32 if device.type == "cuda" else CPU_BATCH.get(name, 8))
        results[(name, batch)] = measure_model(name, batch, args)
    print(report(results, not args.no_memory))


if __name__ == "__main__":
    main()
