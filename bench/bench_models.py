"""Training step and inference batch of whole models: ours against the authors' set-up.

    python bench/bench_models.py                       # CPU defaults
    python bench/bench_models.py --device cuda --models max_former_10_768 --batch-size 32 --amp

For every model, the variants are built from the same zoo entry with the same weights: ``ours`` and
``authors``, a faithful transcription of the authors' code (``authors.AuthorsNet``: their model flow
with autograd's convolutions, batch norms and max-pool on ``flatten(0, 1)`` frames, and spikingjelly
0.0.0.0.12's multi-step LIF with its ``torch`` backend, whose state is reset after each step).
``--baselines authors spikingjelly`` adds the older re-creation: our model with spikingjelly 2.0's
``LIFNode`` swapped in (``_common.swap_in_spikingjelly``). All variants run the same jobs, interleaved
round by round: one training step (forward, cross-entropy, backward, AdamW), one inference batch, and
one inference batch after ``model.fuse()`` (BN folded into convolutions; the authors fold nothing).
Throughput is the median of ``--repeats`` rounds after ``--warmup``; peak memory is measured once per
variant in a fresh process (``_common`` explains how), and "saved" is what a training forward keeps
for the backward (``kernels.saved_bytes``). The last rows give ours / baseline ratios, all from the
same run: speed-up (> 1 is faster) and memory (< 1 is less).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MIB, Config, Workload, median_seconds, parse_args, peak_memory, process_peak, table  # noqa: E402

# Model -> CPU default batch size (CUDA default: 32). CIFAR batch 16, T=4; the event model T=16 at
# 128x128 and ImageNet 224x224 get small batches so that a CPU run takes minutes.
CPU_BATCH = {"max_former_cifar10": 16, "max_resnet18_cifar10": 16, "max_former_cifar10dvs": 2, "max_former_10_384": 4}
BASELINES = ("authors", "spikingjelly")


def variants(args: argparse.Namespace) -> tuple[str, ...]:
    """``ours`` and the baselines asked for (default: the authors' set-up)."""
    return ("ours", *args.baselines)


def measure_model(name: str, batch: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Seconds per job (``train``, ``infer``, ``fused``) and peak bytes (``train_mem``, ``infer_mem``)
    of every variant of one model; jobs of the variants interleaved."""
    configs = {v: Config(name, batch, T=args.T, device=args.device, amp=args.amp, spikingjelly=v == "spikingjelly",
                         authors=v == "authors", neuron_backend=args.neuron_backend, threads=args.threads)
               for v in variants(args)}
    works = {v: Workload(c) for v, c in configs.items()}
    jobs = {}
    for v, w in works.items():
        jobs.update({(v, "train"): w.train_step, (v, "infer"): w.infer, (v, "fused"): w.infer_fused})
    sync = works["ours"].sync
    seconds = median_seconds(jobs, args.repeats, args.warmup, sync, desc=f"{name} b{batch}")
    out = {v: {job: seconds[(v, job)] for job in ("train", "infer", "fused")} for v in configs}
    for v, w in works.items():
        out[v]["saved"] = w.saved_bytes()
    del works, jobs
    if not args.no_memory:
        for v, cfg in configs.items():
            mem = peak_memory(cfg)
            out[v].update({"train_mem": mem.get("train", float("nan")), "infer_mem": mem.get("infer", float("nan"))})
    if args.process_peak:
        for v, cfg in configs.items():
            out[v]["process_mem"] = process_peak(cfg, args.process_peak)
    return out


def report(results: dict[tuple[str, int], dict[str, dict[str, float]]], memory: bool) -> str:
    """The table: images/s and peak MiB per model and variant, then the ratio rows."""
    headers = ["model", "batch", "variant", "train s/step", "train img/s", "infer img/s", "fused infer img/s",
               "saved MiB"]
    if memory:
        headers += ["train peak MiB", "infer peak MiB"]
    process = all("process_mem" in r for res in results.values() for r in res.values())
    if process:
        headers.append("process peak MiB")
    rows, ratios = [], []
    for (name, batch), res in results.items():
        for v, r in res.items():
            row = [name, batch, v, r["train"], batch / r["train"], batch / r["infer"], batch / r["fused"],
                   r["saved"] / MIB]
            if memory:
                row += [r["train_mem"] / MIB, r["infer_mem"] / MIB]
            if process:
                row.append(r["process_mem"] / MIB)
            rows.append(row)
        ours = res["ours"]
        for v, base in res.items():
            if v == "ours":
                continue
            ratio = [name, batch, f"ours/{v}", ours["train"] / base["train"], base["train"] / ours["train"],
                     base["infer"] / ours["infer"], base["fused"] / ours["fused"], ours["saved"] / base["saved"]]
            if memory:
                ratio += [ours["train_mem"] / base["train_mem"], ours["infer_mem"] / base["infer_mem"]]
            if process:
                ratio.append(ours["process_mem"] / base["process_mem"])
            ratios.append(ratio)
    note = ("ours/<baseline> rows: s/step and memory columns are ours / the baseline's (< 1 is less); img/s "
            "columns are speed-ups, the baseline's time / ours (> 1 is faster).")
    return table(rows + ratios, headers) + "\n" + note


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(CPU_BATCH),
                        help=f"zoo names (default: {' '.join(CPU_BATCH)})")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"batch size for every model (default on CPU: {CPU_BATCH}; on CUDA: 32)")
    parser.add_argument("--baselines", nargs="+", default=["authors"], choices=BASELINES,
                        help="what ours is compared with: authors (the faithful transcription, default) and/or "
                             "spikingjelly (our model with spikingjelly 2.0's LIFNode)")
    parser.add_argument("--T", type=int, default=None, help="time steps for every model (default: each model's own)")
    parser.add_argument("--process-peak", type=int, default=0, metavar="STEPS",
                        help="also the peak resident size of a whole fresh process that runs STEPS training "
                             "steps (CPU; libraries and allocator slack included; default: off)")
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
