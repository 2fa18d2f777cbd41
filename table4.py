"""The paper's argument on a laptop: a seeded mini Table 4 on data whose class information lives in
one chosen octave of spatial frequency.

The paper (section 3, Table 4) argues that spiking neurons low-pass filter, that max-pool patch
embeddings and depth-wise convolution mixers keep the high frequencies, and that this buys accuracy.
Here the claim is put to a test it can fail. ``bands-low``, ``bands-mid`` and ``bands-high``
(``events.BandsDVSConfig``) are the same textures through the same event camera, except for the
octave that holds the class information. Five variants of ``max_former_tiny``, each one change away
from it, are trained with ``train.py`` on each, with several seeds:

- ``max``: Embed-Max in stages 2-3, DWC-3 mixers, LIF (``max_former_tiny`` itself, Max-Former's design);
- ``orig``: Embed-Orig in stages 2-3 (strided convolutions, no pool);
- ``avg``: Embed-Avg (average pools where ``max`` has max pools);
- ``ssa``: spiking self-attention instead of DWC in the early stages 1-2;
- ``if``: IF neurons (the integrator, the strongest low-pass) instead of LIF.

For every cell (variant x dataset) it reports the final test top-1 of each seed, their mean and a
95 % Student-t interval, and the high-frequency share (``spectrum.high_frequency_share``) of each
trained model's block outputs on the test set. ``probe`` measures where each dataset's class
information lives: a linear classifier on the event frames kept to one octave at a time.

    python table4.py                     # the full grid (docs/argument.md), about 25 min on 2 cores
    python table4.py --quick --out DIR   # a tiny grid for the test suite (a minute)
    python docs/generate.py table4       # the full grid into docs/results.json and docs/figures/

A cell already finished in ``--out`` by the same flags and dataset design is read back, not trained
again, so an interrupted grid resumes; a quick grid's cells are never taken for the full grid's.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data import BAND_DATASETS, DATA_ERRORS, bands_config, build_datasets
from events import BANDS, SIMULATION_VERSION, cycles_per_view

# name -> (train.py flags that make the variant of max_former_tiny, what it changes, Table 4 / section)
VARIANTS: dict[str, tuple[tuple[str, ...], str]] = {
    "max": ((), "Embed-Max, DWC-3, LIF: max_former_tiny (section 3.2-3.3)"),
    "orig": (("--spec", "embed=orig,orig,orig"), "Embed-Orig in stages 2-3 (Table 4)"),
    "avg": (("--spec", "embed=orig,avg,avg"), "Embed-Avg in stages 2-3 (Table 4)"),
    "ssa": (("--spec", "mixer=ssa,ssa,dwc3"), "SSA mixers in stages 1-2 (Table 4, Table 7)"),
    "if": (("--neuron", "if"), "IF neurons (section 3.1)"),
}


@dataclass(frozen=True)
class Grid:
    """What is trained: every variant on every dataset with every seed, ``epochs`` of train.py each."""

    variants: tuple[str, ...] = tuple(VARIANTS)
    datasets: tuple[str, ...] = tuple(BAND_DATASETS)
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 10
    limit_train: int | None = None  # train.py --limit-train (the quick grid); None: the whole training split
    limit_test: int | None = None


FULL = Grid()
QUICK = Grid(variants=("max", "avg"), datasets=("bands-low", "bands-high"), seeds=(0, 1), epochs=1,
             limit_train=64, limit_test=64)
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def interval(values: Sequence[float]) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean and its 95 % Student-t interval over 2 to 10 seeds."""
    if not 2 <= len(values) <= 10:
        raise ValueError(f"an interval needs 2 to 10 values, got {len(values)}")
    mean = statistics.fmean(values)
    half = T_975[len(values) - 1] * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


# ---------------------------------------------------------------------------------------------
# Where the class information lives: a linear probe per octave
# ---------------------------------------------------------------------------------------------

def octave_masks(size: int) -> dict[str, torch.Tensor]:
    """FFT masks of a ``size`` px frame: below 1 cycle per frame (``dc``), the three octaves of
    ``events.BANDS``, and from 8 cycles up (``corner``: the diagonal bins beyond the last octave)."""
    radial, _ = cycles_per_view(size, size)
    octaves = {band: (radial >= 2 ** k) & (radial < 2 ** (k + 1)) for k, band in enumerate(BANDS)}
    return {"dc": radial < 1, **octaves, "corner": radial >= 2 ** len(BANDS)}


def sector_power(frames: torch.Tensor, mask: torch.Tensor, sectors: int = 8) -> np.ndarray:
    """``log(1 + power)`` of every map of event frames ``[N, T, 2, H, W]`` in the FFT bins of ``mask``,
    summed within each of ``sectors`` orientations: ``[N, T * 2 * sectors]``. A power spectrum does
    not depend on where a texture lies, and the sums are steadier than single bins."""
    _, angle = cycles_per_view(frames.shape[-1], frames.shape[-1])
    sector = (angle / (math.pi / sectors)).long().clamp(max=sectors - 1)
    power = torch.fft.fft2(frames.double()).abs().pow(2)
    sums = [(power * (mask & (sector == j))).sum((-2, -1)) for j in range(sectors)]
    return torch.log1p(torch.stack(sums, -1)).flatten(1).numpy()


def probe(dataset: str, data_dir: str | None, limit: int | None = None) -> dict[str, float]:
    """Test accuracy of a linear classifier (standardised logistic regression) trained on the power
    of the event frames of ``dataset`` per orientation (:func:`sector_power`) in one band of
    :func:`octave_masks` at a time. High
    accuracy in an octave means the classes can be told apart from that octave's power alone;
    chance is 1 / classes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_set, test_set, info = build_datasets(dataset, data_dir=data_dir, augment=False)

    def stacked(ds, n: int | None) -> tuple[torch.Tensor, np.ndarray]:
        xs, ys = zip(*(ds[i] for i in range(min(n or len(ds), len(ds)))))
        return torch.stack(xs), np.array(ys)

    (x_train, y_train), (x_test, y_test) = stacked(train_set, limit), stacked(test_set, limit)
    accuracy = {}
    for band, mask in octave_masks(info.image_size[0]).items():
        classifier = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        classifier.fit(sector_power(x_train, mask), y_train)
        accuracy[band] = float(classifier.score(sector_power(x_test, mask), y_test))
    return accuracy


# ---------------------------------------------------------------------------------------------
# One cell of the grid: train.py, then the spectra of the trained model
# ---------------------------------------------------------------------------------------------

def train_flags(grid: Grid, variant: str, dataset: str, seed: int, data_dir: str | None, out: Path) -> list[str]:
    """The train.py command line of one run (the offline default's recipe, on ``dataset``)."""
    flags = ["--dataset", dataset, "--seed", str(seed), "--epochs", str(grid.epochs), *VARIANTS[variant][0],
             "--output", str(out), "--overwrite", *(["--data-dir", data_dir] if data_dir else [])]
    for flag, limit in (("--limit-train", grid.limit_train), ("--limit-test", grid.limit_test)):
        flags += [flag, str(limit)] if limit else []
    return flags


def run_cell(grid: Grid, variant: str, dataset: str, seed: int, data_dir: str | None, out: Path) -> dict:
    """Train one run with ``train.main`` on one thread (its output into ``out/train.log``) and measure
    the high-frequency share of every block output of the final model on the test set."""
    import spectrum
    import train
    from checkpoints import load_model

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    started, cpu = time.time(), time.process_time()
    with open(out / "train.log", "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        metrics = train.main(train_flags(grid, variant, dataset, seed, data_dir, out))
    model = load_model(out / "last.pth")
    _, test_set, _ = build_datasets(dataset, data_dir=data_dir, augment=False)
    n = min(grid.limit_test or len(test_set), len(test_set))
    batches = [torch.stack([test_set[i][0] for i in range(j, min(j + 100, n))]) for j in range(0, n, 100)]
    layers = spectrum.spatial_spectra(model, batches, spectrum.block_names(model))
    return {"acc1": metrics["final_acc1"], "best_acc1": metrics["best_acc1"],
            "hf_share": {layer.name: layer.hf_share for layer in layers},
            "started": started, "finished": time.time(), "cpu_seconds": time.process_time() - cpu}


def cell_folder(out: Path, variant: str, dataset: str, seed: int) -> Path:
    return out / "runs" / f"{dataset}-{variant}-seed{seed}"


def cell_identity(grid: Grid, variant: str, dataset: str, seed: int) -> dict:
    """What makes a cell's result besides its folder's name: the variant's flags, seed, epochs, sample
    limits and the dataset's design. A ``cell.json`` is read back only when it records the same."""
    return {"variant_flags": list(VARIANTS[variant][0]), "seed": seed, "epochs": grid.epochs,
            "limit_train": grid.limit_train, "limit_test": grid.limit_test,
            "dataset": asdict(bands_config(dataset)), "simulation": SIMULATION_VERSION}


def run_grid(grid: Grid, data_dir: str | None, out: Path, jobs: int) -> dict[tuple[str, str, int], dict]:
    """Every cell of ``grid``, ``jobs`` at a time in fresh processes; a cell finished in ``out`` by
    the same flags and dataset design is read back, any other (a quick grid's, an older design's) is
    trained again."""
    for dataset in grid.datasets:  # simulate and integrate once, before the runs share the cache
        build_datasets(dataset, data_dir=data_dir, augment=False)
    cells = [(v, d, s) for d in grid.datasets for v in grid.variants for s in grid.seeds]
    results, todo = {}, []
    for cell in cells:
        done = cell_folder(out, *cell) / "cell.json"
        kept = json.loads(done.read_text()) if done.is_file() else {}
        if kept.get("identity") == cell_identity(grid, *cell):
            results[cell] = kept
        else:
            todo.append(cell)
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_cell, grid, *cell, data_dir, cell_folder(out, *cell)): cell for cell in todo}
        for future in tqdm(as_completed(futures), total=len(futures), desc="mini Table 4", unit="run"):
            cell = futures[future]
            results[cell] = {**future.result(), "identity": cell_identity(grid, *cell)}
            (cell_folder(out, *cell) / "cell.json").write_text(json.dumps(results[cell], indent=1))
    return results


def summarise(grid: Grid, results: dict[tuple[str, str, int], dict]) -> dict:
    """Per dataset and variant: seeds' accuracies, mean and 95 % interval; mean HF share per block."""
    table: dict = {}
    for dataset in grid.datasets:
        for variant in grid.variants:
            runs = [results[variant, dataset, s] for s in grid.seeds]
            acc = [r["acc1"] for r in runs]
            mean, low, high = interval(acc)
            blocks = runs[0]["hf_share"]
            table.setdefault(dataset, {})[variant] = {
                "acc1": acc, "mean": mean, "low": low, "high": high,
                "hf_share": {b: statistics.fmean(r["hf_share"][b] for r in runs) for b in blocks}}
    return table


def verdicts(table: dict, base: str = "max") -> dict:
    """For every dataset and other variant: is ``base`` better, worse, or not resolved (intervals overlap)?"""
    out: dict = {}
    for dataset, row in table.items():
        for variant, cell in row.items():
            if variant != base:
                b = row[base]
                word = ("better" if b["low"] > cell["high"] else "worse" if b["high"] < cell["low"]
                        else "not resolved")
                out.setdefault(dataset, {})[variant] = word
    return out


def plot(table: dict, path: Path, title: str) -> None:
    """Accuracy against the class band, one line per variant, with its 95 % intervals."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(table)
    variants = list(table[datasets[0]])
    x = np.arange(len(datasets))
    fig, ax = plt.subplots(figsize=(7.0, 5.4))
    for i, variant in enumerate(variants):
        cells = [table[d][variant] for d in datasets]
        mean = np.array([c["mean"] for c in cells])
        err = np.array([[c["mean"] - c["low"] for c in cells], [c["high"] - c["mean"] for c in cells]])
        ax.errorbar(x + (i - (len(variants) - 1) / 2) * 0.06, mean, yerr=err, marker="o", capsize=3,
                    label=f"{variant}: {VARIANTS[variant][1]}")
    octaves = {f"bands-{b}": f"{b}\n{2 ** k}-{2 ** (k + 1)} cycles / frame" for k, b in enumerate(BANDS)}
    ax.axhline(100 / bands_config(datasets[0]).classes, color="grey", ls=":", lw=1, label="chance")
    ax.set_xticks(x, [octaves[d] for d in datasets])
    ax.set_xlabel("octave that holds the class information")
    ax.set_ylabel("final test top-1 (%), mean and 95 % interval")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(grid: Grid, data_dir: str | None, out: Path, jobs: int, figure: Path | None = None) -> dict:
    """The grid, the probe, the summary and the figure (default ``out/table4.png``); writes
    ``out/table4.json`` and returns its record. ``wall_seconds`` spans the first run's start to the
    last run's end (so a resumed grid keeps the time of the runs it reads back); ``cpu_seconds`` is
    the CPU time of all runs, which a machine's other load does not change."""
    results = run_grid(grid, data_dir, out, jobs)
    probes = {d: probe(d, data_dir, grid.limit_train) for d in tqdm(grid.datasets, desc="probe", unit="dataset")}
    table = summarise(grid, results)
    design = {k: v for k, v in asdict(bands_config(grid.datasets[0])).items() if k != "band"}
    record = {"grid": asdict(grid), "jobs": jobs, "dataset": design, "probe": probes, "table": table,
              "verdicts": verdicts(table),
              "wall_seconds": max(r["finished"] for r in results.values()) - min(r["started"] for r in results.values()),
              "cpu_seconds": sum(r["cpu_seconds"] for r in results.values())}
    title = (f"mini Table 4: max_former_tiny variants, {len(grid.seeds)} seeds, {grid.epochs} epochs"
             + (" (quick grid)" if grid != FULL else ""))
    plot(table, figure or out / "table4.png", title)
    (out / "table4.json").write_text(json.dumps(record, indent=1))
    return record


def print_table(record: dict) -> None:
    table = record["table"]
    for dataset, row in table.items():
        print(f"{dataset}: probe {', '.join(f'{b} {a:.2f}' for b, a in record['probe'][dataset].items())}")
        for variant, c in row.items():
            verdict = record["verdicts"][dataset].get(variant, "")
            print(f"  {variant:5s} {c['mean']:6.2f} [{c['low']:6.2f}, {c['high']:6.2f}]  "
                  f"HF share after the last block {list(c['hf_share'].values())[-1]:.3f}  "
                  f"{'max is ' + verdict if verdict else ''}")
    print(f"grid: {record['wall_seconds']:.0f} s wall with {record['jobs']} processes, "
          f"{record['cpu_seconds']:.0f} s of CPU time")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a tiny grid (2 variants, 2 datasets, 2 seeds, 1 epoch on 64 samples) for the test suite")
    parser.add_argument("--data-dir", default=None, help="folder for the simulated datasets (default: ./data)")
    parser.add_argument("--out", default="runs/table4",
                        help="folder for the runs, table4.json and table4.png (default: runs/table4)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="training processes at once, one thread each (default: 2, for 2 cores)")
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.jobs < 1:
        sys.exit(f"--jobs must be at least 1, got {args.jobs}")
    try:
        record = run(QUICK if args.quick else FULL, args.data_dir, Path(args.out), args.jobs)
    except DATA_ERRORS as e:
        sys.exit(str(e))
    print_table(record)
    print(f"wrote {Path(args.out) / 'table4.json'} and {Path(args.out) / 'table4.png'}")
    return record


if __name__ == "__main__":
    main()
