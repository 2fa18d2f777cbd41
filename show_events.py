"""Look at an event dataset: a few samples' frames and raw events (docs/events.md's frame picture).

    python show_events.py digits-dvs --out frames.png
    python show_events.py dvsgesture --data-dir ~/data --samples 4

Each sample's T frames of equal event count (``EventSample.frames``, the integration the models
read) are drawn ON red and OFF blue, beside an x-y-t scatter of the first sample's events; each
sample's event count, duration, ON share and events per frame are printed.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data import DATA_ERRORS, DEFAULT_T, EVENT_DATASETS, check_writable_folder, event_samples
from events import EventSample


def polarity_image(frame: np.ndarray, scale: float) -> np.ndarray:
    """RGB ``[H, W, 3]`` of one frame ``[2, H, W]``: white background, ON (channel 1) red, OFF blue."""
    off, on = np.clip(frame / scale, 0, 1)
    return np.stack([1 - off, 1 - np.maximum(on, off), 1 - on], axis=-1)


def show(samples: Sequence[EventSample], size: tuple[int, int], T: int, out: Path, title: str) -> None:
    """Write a PNG: each sample's T frames (rows) and an x-y-t scatter of the first sample's events."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(1.8 * T + 4.5, 1.8 * len(samples) + 0.6))
    grid = fig.add_gridspec(len(samples), T + 2, left=0.05, right=0.94, bottom=0.04, top=0.88, wspace=0.08)
    for row, sample in enumerate(samples):
        events = sample.load()
        frames = sample.frames(events, T, size)
        scale = max(np.percentile(frames[frames > 0], 99), 1) if frames.any() else 1.0
        print(f"{sample.name}: label {sample.label}, {len(events)} events, "
              f"{(events['t'][-1] - events['t'][0]) / 1000 if len(events) else 0:.1f} ms, "
              f"ON share {np.mean(events['p'] != 0) if len(events) else 0:.2f}, events per frame "
              f"{frames.sum(axis=(1, 2, 3)).astype(int).tolist()}")
        for t in range(T):
            ax = fig.add_subplot(grid[row, t])
            ax.imshow(polarity_image(frames[t], scale), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"frame {t}", fontsize=9)
            if t == 0:
                ax.set_ylabel(f"label {sample.label}", fontsize=9)
    events = samples[0].load()
    keep = np.random.default_rng(0).permutation(len(events))[:4000]  # a readable, small figure
    ax = fig.add_subplot(grid[:, T:], projection="3d")
    for p, colour, label in ((1, "tab:red", "ON (p=1)"), (0, "tab:blue", "OFF (p=0)")):
        e = events[keep][(events["p"][keep] != 0) == bool(p)]
        ax.scatter(e["t"] / 1000, e["x"], e["y"], s=1, c=colour, label=label, depthshade=False)
    ax.set_xlabel("t (ms)")
    ax.set_ylabel("x")
    ax.set_zlabel("y")
    ax.invert_zaxis()  # y grows downwards, as in the frames
    ax.set_title(f"events of {samples[0].name} ({len(keep)} of {len(events)})", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(title, fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    print(f"wrote {out}")


def main(argv: Sequence[str] | None = None) -> None:
    """``python show_events.py DATASET``; bad input exits with status 2 and one message."""
    p = argparse.ArgumentParser(prog="show_events.py",
                                description="Look at an event dataset: write a PNG of a few samples' T frames (ON red, "
                                            "OFF blue) and an x-y-t scatter of one sample's events; print each "
                                            "sample's event statistics.")
    p.add_argument("dataset", choices=EVENT_DATASETS, help="event dataset")
    p.add_argument("--out", default="runs/show.png", help="output PNG (default: runs/show.png)")
    p.add_argument("--data-dir", default=None, help="dataset folder (default: ./data)")
    p.add_argument("--download", action="store_true", help="fetch a missing dataset that data.py can download")
    p.add_argument("--split", choices=("train", "test"), default="train", help="split to draw from (default: train)")
    p.add_argument("-T", type=int, default=None, help="frames per sample (default: the dataset's, 4 or 16)")
    p.add_argument("--samples", type=int, default=3,
                   help="number of samples: the first of each of the first N labels (default: 3)")
    p.add_argument("--index", type=int, nargs="+", default=None, help="show these sample indices instead")
    args = p.parse_args(argv)
    T = DEFAULT_T[args.dataset] if args.T is None else args.T
    if T < 1 or args.samples < 1:
        p.error(f"-T ({T}) and --samples ({args.samples}) must be positive")
    out = Path(args.out).expanduser()
    try:
        check_writable_folder(out.parent, "the --out folder", "; the PNG is written there", parents=True)
        samples, size = event_samples(args.dataset, args.data_dir, args.split, args.download)
        if args.index:
            bad = [i for i in args.index if not 0 <= i < len(samples)]
            if bad:
                p.error(f"--index {bad} outside the {args.split} split's 0..{len(samples) - 1}")
            picks = [samples[i] for i in args.index]
        else:
            first = {}
            for s in samples:
                first.setdefault(s.label, s)
            picks = [first[label] for label in sorted(first)][:args.samples]
        show(picks, size, T, out, f"{args.dataset} {args.split}: T={T} frames of equal event count")
    except (*DATA_ERRORS, OSError) as err:
        p.error(str(err))


if __name__ == "__main__":
    main()
