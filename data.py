"""Datasets for Max-Former: where each dataset lives on disk, how it is split, and what a sample is.

    train_set, test_set, info = build_datasets("digits-dvs")    # offline default, no download
    x, label = train_set[0]                                      # x: float32 [T, 2, 24, 24]

Event datasets (paper section 4, "neuromorphic datasets"; the authors' pipeline is SpikingJelly's
``split_by='number'`` frames):

- ``dvsgesture``: DVS128 Gesture (11 classes). The original IBM tree (``DvsGesture/`` with
  ``trials_to_train.txt``, ``trials_to_test.txt``, ``userNN_<light>.aedat`` in AEDAT 3.1 and
  ``userNN_<light>_labels.csv``) with the official trial split, one sample per CSV row; or tonic's
  preprocessed copy (``DVSGesture/ibmGestureTrain|ibmGestureTest/userNN_<light>/<label>.npy``).
- ``cifar10dvs``: CIFAR10-DVS (10 classes). The original per-class folders of AEDAT 2.0 files
  (``airplane/cifar10_airplane_0.aedat`` ...) or tonic's AEDAT 4.0 copy (``CIFAR10DVS/airplane/*.aedat4``).
  Split per class in file-name (string) order: the first ceil(0.9 n) train, the rest test.
- ``digits-dvs``: scikit-learn's bundled 8x8 handwritten digits turned into event streams by a small
  event-camera simulation (``events.simulate_digit_events``); needs no download.
- ``bands-low``, ``bands-mid``, ``bands-high``: 4 classes of textures that differ only in one octave of
  spatial frequency (``events.BandsDVSConfig``), through the same simulation; for the paper's
  argument (docs/argument.md, ``table4.py``). No download.

Every event sample goes through the same path (events.py): events -> ``integrate_frames`` (T slices
of equal event count, two polarity channels) -> per-sample npz cache -> ``EventFrames`` -> optional
``EventAugment`` (train only, augment.py). ``MixupCutmix`` (augment.py) is the batch-level part.

Static datasets: ``cifar10`` / ``cifar100`` through torchvision and ``imagenet`` from an ImageFolder
tree. Training transforms follow the authors' pipelines with a RandAugment policy chosen by name
(``augment.POLICIES``; by default the one the authors run on that dataset); see
``augment.cifar_transforms`` and ``augment.imagenet_transforms``. CIFAR's random erasing runs on the mixed batch (``augment.erase_batch``,
called by the training loop), not here.

Nothing is ever downloaded unless ``download=True``; a missing dataset raises
``DatasetNotFoundError`` saying what was expected where and how to get it; an unusable data folder
raises ``DataDirError`` before anything is created (``check_data_dir``); a bad data file raises
``DataFileError`` naming it. ``DATA_ERRORS`` holds the three, for command lines to catch.

``python show_events.py digits-dvs --out frames.png`` draws a few samples' frames.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from augment import EventAugment, MixupCutmix, check_policy, cifar_transforms, imagenet_transforms
from events import (BANDS, SIMULATION_VERSION, BandsDVSConfig, DataFileError, DigitsDVSConfig, EventFrames,
                    EventSample, band_textures, cache_frames, integrate_frames, make_events, read_aedat2_cifar10dvs,
                    read_aedat31, read_aedat4, read_tonic_gesture_npy, save_npz, simulate_digit_events)

__all__ = ["DATASETS", "DATA_ERRORS", "DataDirError", "DataFileError", "DatasetInfo", "DatasetNotFoundError",
           "MixupCutmix", "build_datasets", "check_data_dir", "event_samples", "integrate_frames", "make_events",
           "read_aedat2_cifar10dvs", "read_aedat31", "seeded_subset"]

BAND_DATASETS: dict[str, str] = {f"bands-{band}": band for band in BANDS}  # name -> events.BandsDVSConfig.band
GENERATED: tuple[str, ...] = ("digits-dvs", *BAND_DATASETS)  # simulated here, never downloaded
DATASETS: tuple[str, ...] = (*GENERATED, "dvsgesture", "cifar10dvs", "cifar10", "cifar100", "imagenet")
EVENT_DATASETS: tuple[str, ...] = (*GENERATED, "dvsgesture", "cifar10dvs")
DEFAULT_DATA_DIR = "data"
DEFAULT_T = {**{name: 4 for name in GENERATED}, "dvsgesture": 16, "cifar10dvs": 16}
DVS_SIZE = (128, 128)  # (H, W) of the DVS128 sensor used by both event datasets

CIFAR10DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# SpikingJelly stores Gesture samples in folders '0'..'10' and torchvision numbers them in string order,
# so the authors' target for IBM class c (1..11) is this table's entry c-1 (docs/reference/datasets.md,
# DVS128 Gesture target order). Use it (label_order="spikingjelly") to line labels up with the released
# DVS-Gesture checkpoint.
SPIKINGJELLY_GESTURE_TARGET = (0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 2)


@dataclass
class DatasetInfo:
    """What a model needs to know about a dataset's samples."""

    name: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]  # (H, W) of one frame/image as the model sees it
    T: int | None  # event datasets: frames per sample; static datasets: None

    @property
    def is_event(self) -> bool:
        """Event data (frames of event counts, T of them per sample), as opposed to static images."""
        return self.T is not None

    def model_overrides(self) -> dict[str, int]:
        """``zoo.create_model`` overrides that size a model for this data (classes, channels,
        resolution, and T for event data)."""
        sized = dict(num_classes=self.num_classes, in_channels=self.in_channels, img_size=self.image_size[0])
        return sized if self.T is None else {**sized, "T": self.T}


# Where to get each dataset read from disk: (obtain, what --download fetches or None).
GESTURE_OBTAIN = ("IBM, https://research.ibm.com/interactive/dvsgesture/ (DvsGesture.tar.gz, extract it), "
                  "or tonic's preprocessed copy (--download)")
GESTURE_DOWNLOAD = "tonic's preprocessed copy (figshare; 1077/264 samples, not the paper's IBM split)"
CIFAR10DVS_OBTAIN = ("figshare, https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671 (ten per-class "
                     "zips, extract them), or tonic's AEDAT 4 copy (--download)")
CIFAR10DVS_DOWNLOAD = "tonic's AEDAT 4 copy (figshare)"
CIFAR_OBTAIN, CIFAR_DOWNLOAD = "https://www.cs.toronto.edu/~kriz/cifar.html", "it through torchvision"
IMAGENET_OBTAIN = "https://image-net.org (ILSVRC2012 train and validation images)"
OBTAIN: dict[str, tuple[str, str | None]] = {
    "dvsgesture": (GESTURE_OBTAIN, GESTURE_DOWNLOAD), "cifar10dvs": (CIFAR10DVS_OBTAIN, CIFAR10DVS_DOWNLOAD),
    "cifar10": (CIFAR_OBTAIN, CIFAR_DOWNLOAD), "cifar100": (CIFAR_OBTAIN, CIFAR_DOWNLOAD),
    "imagenet": (IMAGENET_OBTAIN, None)}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is missing or incomplete; the message says what was expected where and how to get it."""

    def __init__(self, dataset: str, looked_in: Sequence[Path | str], expected: str, obtain: str,
                 download_hint: str | None = None) -> None:
        where = "\n".join(f"    {p}" for p in looked_in)
        fetch = (f"or pass --download to fetch {download_hint}." if download_hint
                 else "--download cannot fetch this dataset; place the files by hand.")
        super().__init__(
            f"{dataset}: dataset not found or incomplete.\n"
            f"  Looked in:\n{where}\n"
            f"  Expected: {expected}\n"
            f"  Obtain it from: {obtain}\n"
            f"  Point --data-dir at the folder that holds it, {fetch}")


class DataDirError(ValueError):
    """A --data-dir or --cache-dir that cannot be used (not a folder, missing, not creatable, read-only)."""


DATA_ERRORS = (DatasetNotFoundError, DataDirError, DataFileError)  # bad input a command line reports in one message


def check_writable_folder(path: Path, what: str, hint: str, parents: bool) -> None:
    """``path`` is a writable folder, or one that can be made: its parent (with ``parents``, its nearest
    existing ancestor) is a writable folder. ``hint`` ends the message of an unwritable one."""
    if path.exists():
        if not path.is_dir():
            raise DataDirError(f"{what} {path} is not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise DataDirError(f"{what} {path} is not writable{hint}")
        return
    ancestor = path.parent
    while parents and not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise DataDirError(f"{what} {path} cannot be created: {ancestor} is not a folder")
    if not ancestor.exists():
        raise DataDirError(f"{what} {path} does not exist, nor does its parent {ancestor}; create it first")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise DataDirError(f"{what} {path} cannot be created: {ancestor} is not writable{hint}")


def check_data_dir(path: str | Path | None, dataset: str | None = None, download: bool = False,
                   cache_dir: str | Path | None = None, *, writes_cache: bool = True) -> Path:
    """The data folder as a ``Path`` once it is known to be usable for ``dataset``; creates nothing.

    A dataset read from disk (or ``dataset=None``) needs an existing folder, unless ``download`` may
    fetch it into a new one; the ``GENERATED`` datasets are simulated, so the default folder may be created (if its
    parent exists), but a named one must exist: a mistyped ``--data-dir`` creates nothing. What will be written must be writable: the download target, and for event data (unless
    ``writes_cache`` is False) the frame cache, ``cache_dir`` or by default ``<path>/cache``. A missing
    folder of a dataset on disk raises ``DatasetNotFoundError``, anything else unusable ``DataDirError``.
    """
    root = Path(path or DEFAULT_DATA_DIR).expanduser()
    if root.exists() and not root.is_dir():
        raise DataDirError(f"--data-dir {root} is not a folder")
    if not root.exists():
        if dataset in GENERATED and path is not None and not download:  # a typo must not create folders
            raise DataDirError(f"--data-dir {root} does not exist; create it (mkdir -p {root}) or leave "
                               f"--data-dir out to use ./{DEFAULT_DATA_DIR}")
        if not (dataset in GENERATED or download):
            what = dataset or "the dataset"
            raise DatasetNotFoundError(what, [root], f"an existing folder holding {what} (--data-dir {root} does "
                                       "not exist)", *OBTAIN.get(dataset or "", ("its publisher", None)))
        check_writable_folder(root, "--data-dir", "", parents=False)
    elif download:
        check_writable_folder(root, "--data-dir", " (the download goes there)", parents=False)
    if dataset in EVENT_DATASETS and writes_cache:
        if cache_dir is None:
            check_writable_folder(root / "cache", "the frame cache", "; pass a writable --cache-dir", parents=True)
        else:
            check_writable_folder(Path(cache_dir).expanduser(), "--cache-dir", "", parents=True)
    return root


def seeded_subset(dataset: Dataset, n: int, seed: int) -> Subset:
    """``n`` samples of ``dataset`` in a fixed random order: the first ``n`` of ``torch.randperm`` under
    ``torch.Generator().manual_seed(seed)`` (all of them, permuted, when ``n >= len(dataset)``)."""
    if n < 1:
        raise ValueError(f"a subset needs at least one sample, got n={n}")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return Subset(dataset, order[:n].tolist())


# ----------------------------------------------------------------------------------------------------
# DVS128 Gesture.


def _subdirs(data_dir: Path, bases: Sequence[str], subs: Sequence[str]) -> list[Path]:
    return [data_dir / b / s for b in bases for s in subs]


def _read_labels_csv(path: Path) -> np.ndarray:
    """Rows ``(class, start_us, end_us)`` of a Gesture labels CSV (docs/reference/datasets.md, labels CSV)."""
    expected = "expected a header line, then rows 'class,startTime_usec,endTime_usec' with class 1..11 and start < end"
    try:
        rows = np.loadtxt(path, dtype=np.int64, delimiter=",", skiprows=1, ndmin=2)
    except ValueError as err:
        raise DataFileError(f"{path}: {expected} ({err})") from None
    if rows.shape[1] != 3 or rows.size and (rows[:, 0].min() < 1 or rows[:, 0].max() > 11
                                            or (rows[:, 1] >= rows[:, 2]).any()):
        raise DataFileError(f"{path}: {expected}")
    return rows


def _time_window(read: Callable[[Path], np.ndarray], path: Path, start: int, end: int) -> np.ndarray:
    events = read(path)
    return events[(events["t"] >= start) & (events["t"] < end)]


def _gesture_original(root: Path, label_map: Sequence[int]) -> dict[str, tuple[list[EventSample], list[Path]]]:
    """Samples of the IBM tree: every labels-CSV row of each listed trial, events start <= t < end."""
    read_trial = functools.lru_cache(maxsize=1)(read_aedat31)  # the rows of one trial share one read
    splits = {}
    for split in ("train", "test"):
        listing = root / f"trials_to_{split}.txt"
        trials = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        files = [(root / t, root / f"{t.removesuffix('.aedat')}_labels.csv") for t in trials]
        missing = [str(p) for pair in files for p in pair if not p.is_file()]
        if missing:
            raise DatasetNotFoundError("dvsgesture", [root], f"the files named in {listing.name}; missing: "
                                       + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""),
                                       GESTURE_OBTAIN)
        samples, sources = [], [listing]
        for aedat, csv in files:
            sources += [aedat, csv]
            seen: dict[int, int] = {}
            for cls, start, end in _read_labels_csv(csv):
                k = seen[cls] = seen.get(cls, -1) + 1
                samples.append(EventSample(f"{aedat.stem}_{cls - 1}_{k}", label_map[cls - 1],
                                           functools.partial(_time_window, read_trial, aedat, int(start), int(end)),
                                           aedat))
        splits[split] = samples, sources
    return splits


def _gesture_tonic(root: Path, label_map: Sequence[int]) -> dict[str, tuple[list[EventSample], list[Path]]]:
    """Samples of tonic's copy: ``ibmGesture{Train,Test}/userNN_<light>/<label>.npy``."""
    splits = {}
    for split, folder in (("train", "ibmGestureTrain"), ("test", "ibmGestureTest")):
        files = sorted((root / folder).glob("*/*.npy"))
        if not files:
            raise DatasetNotFoundError("dvsgesture", [root / folder], "userNN_<lighting>/<label>.npy files",
                                       GESTURE_OBTAIN, GESTURE_DOWNLOAD)
        bad = [f for f in files if not f.stem.isdigit() or int(f.stem) >= len(label_map)]
        if bad:
            raise DataFileError(f"{bad[0]}: tonic's Gesture files are named <label>.npy with label 0..10")
        samples = [EventSample(f"{f.parent.name}_{f.stem}", label_map[int(f.stem)],
                               functools.partial(read_tonic_gesture_npy, f), f) for f in files]
        splits[split] = samples, files
    return splits


def _find_gesture(data_dir: Path, download: bool, label_map: Sequence[int]):
    bases = ("", "dvsgesture", "DVS128Gesture")
    originals = _subdirs(data_dir, bases, ("", "DvsGesture", "extract/DvsGesture"))
    for root in originals:
        if (root / "trials_to_train.txt").is_file() and (root / "trials_to_test.txt").is_file():
            return _gesture_original(root, label_map)
    tonic_roots = _subdirs(data_dir, bases, ("", "DVSGesture"))
    for root in tonic_roots:
        if (root / "ibmGestureTrain").is_dir() and (root / "ibmGestureTest").is_dir():
            return _gesture_tonic(root, label_map)
    if download:
        import tonic

        for train in (True, False):
            tonic.datasets.DVSGesture(save_to=str(data_dir), train=train)
        return _gesture_tonic(data_dir / "DVSGesture", label_map)
    raise DatasetNotFoundError(
        "dvsgesture", originals + [r / "ibmGestureTrain" for r in tonic_roots],
        "the IBM tree (trials_to_train.txt, trials_to_test.txt, userNN_<lighting>.aedat, "
        "userNN_<lighting>_labels.csv) or tonic's DVSGesture/ibmGestureTrain|ibmGestureTest folders",
        GESTURE_OBTAIN, GESTURE_DOWNLOAD)


# ----------------------------------------------------------------------------------------------------
# CIFAR10-DVS.


def split_90_10(files: Sequence[Path], train_ratio: float = 0.9) -> tuple[list[Path], list[Path]]:
    """The authors' per-class split: file names in string order, the first ceil(0.9 n) for training."""
    ordered = sorted(files, key=lambda p: p.name)
    k = math.ceil(len(ordered) * train_ratio)
    return ordered[:k], ordered[k:]


def _find_cifar10dvs(data_dir: Path, download: bool):
    roots = _subdirs(data_dir, ("", "cifar10dvs", "CIFAR10DVS", "CIFAR10-DVS"), ("", "extract"))
    root = next((r for r in roots if any((r / c).is_dir() for c in CIFAR10DVS_CLASSES)), None)
    if root is None and download:
        import tonic

        tonic.datasets.CIFAR10DVS(save_to=str(data_dir))
        root = data_dir / "CIFAR10DVS"
    expected = "one folder per class (airplane ... truck) of AEDAT 2.0 *.aedat (originals) or *.aedat4 (tonic)"
    if root is None:
        raise DatasetNotFoundError("cifar10dvs", roots, expected, CIFAR10DVS_OBTAIN, CIFAR10DVS_DOWNLOAD)
    per_class = {c: sorted((root / c).rglob("*.aedat")) for c in CIFAR10DVS_CLASSES}
    reader = read_aedat2_cifar10dvs
    if not any(per_class.values()):
        per_class, reader = {c: sorted((root / c).rglob("*.aedat4")) for c in CIFAR10DVS_CLASSES}, read_aedat4
    empty = [c for c, files in per_class.items() if not files]
    if empty:
        raise DatasetNotFoundError("cifar10dvs", [root], f"{expected}; no files for: {', '.join(empty)}",
                                   CIFAR10DVS_OBTAIN, CIFAR10DVS_DOWNLOAD)
    splits = {"train": ([], []), "test": ([], [])}
    for label, files in enumerate(per_class.values()):
        for split, part in zip(("train", "test"), split_90_10(files)):
            splits[split][0].extend(EventSample(f.stem, label, functools.partial(reader, f), f) for f in part)
            splits[split][1].extend(part)
    return splits


# ----------------------------------------------------------------------------------------------------
# digits-dvs: the offline default, simulated once by events.simulate_digit_events.


def _digit_slice(read: Callable[[Path], dict], path: Path, i: int) -> np.ndarray:
    z = read(path)
    return z["events"][z["offsets"][i]:z["offsets"][i + 1]]


def _load_npz(path: Path) -> dict:
    """The arrays of the simulated digit events; an unreadable file is a ``DataFileError`` naming it."""
    try:
        with np.load(path) as z:
            return {k: z[k] for k in ("events", "offsets", "labels")}
    except Exception as err:  # a damaged npz fails in zipfile, zlib, the .npy header parser, ...: all mean corrupt
        raise DataFileError(f"{path}: corrupt simulated digit events ({type(err).__name__}: {err}); remove it "
                            f"and run again to simulate them anew: rm '{path}'") from None


def _simulated(path: Path, images: Callable[[], np.ndarray], labels: np.ndarray, cfg: DigitsDVSConfig, seed: int,
               splits: dict[str, np.ndarray], prefix: str) -> dict[str, tuple[list[EventSample], list[Path]]]:
    """The splits (sample indices) of images simulated once into the events file ``path``."""
    if not path.exists():
        events, offsets = simulate_digit_events(images(), cfg, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_npz(path, compressed=False, events=events, offsets=offsets, labels=labels)
    read = functools.lru_cache(maxsize=1)(_load_npz)

    def samples(indices: np.ndarray) -> list[EventSample]:
        return [EventSample(f"{prefix}_{i}", int(labels[i]), functools.partial(_digit_slice, read, path, int(i)),
                            path) for i in sorted(indices)]

    return {split: (samples(indices), [path]) for split, indices in splits.items()}


def _events_file(cache_root: Path, name: str, spec: dict) -> Path:
    return Path(cache_root) / name / f"events-{hashlib.sha1(json.dumps(spec).encode()).hexdigest()[:16]}.npz"


def _find_digits(cache_root: Path, seed: int, cfg: DigitsDVSConfig, test_fraction: float = 0.2):
    """Simulate (once, cached by config and seed) and split 80/20, stratified, with a fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    spec = {"cfg": asdict(cfg), "seed": seed, "n": len(digits.target), "version": SIMULATION_VERSION}
    train_idx, test_idx = train_test_split(np.arange(len(digits.target)), test_size=test_fraction,
                                           stratify=digits.target, random_state=seed)
    return _simulated(_events_file(cache_root, "digits-dvs", spec), lambda: digits.images / 16.0, digits.target,
                      cfg, seed, {"train": train_idx, "test": test_idx}, "digit")


# ----------------------------------------------------------------------------------------------------
# bands-low / bands-mid / bands-high: class information in one octave of spatial frequency
# (events.BandsDVSConfig, docs/argument.md), through the same simulation.

def bands_config(name: str) -> BandsDVSConfig:
    """The texture set behind one of ``BAND_DATASETS``."""
    return BandsDVSConfig(band=BAND_DATASETS[name])


def _find_bands(cache_root: Path, seed: int, cfg: BandsDVSConfig):
    """Simulate (once, cached by config and seed); classes interleaved, the first ``train_per_class``
    of each class train, the rest test."""
    n_train, n = cfg.classes * cfg.train_per_class, cfg.classes * (cfg.train_per_class + cfg.test_per_class)
    labels = np.arange(n) % cfg.classes
    spec = {"cfg": asdict(cfg), "seed": seed, "version": SIMULATION_VERSION}
    return _simulated(_events_file(cache_root, f"bands-{cfg.band}", spec), lambda: band_textures(cfg, labels, seed),
                      labels, cfg.sensor(), seed, {"train": np.arange(n_train), "test": np.arange(n_train, n)},
                      "texture")


# ----------------------------------------------------------------------------------------------------
# Static images.

def _build_cifar(name: str, data_dir: Path, download: bool, augment: bool, policy: str | None):
    from torchvision import datasets

    cls, folder, classes = {"cifar10": (datasets.CIFAR10, "cifar-10-batches-py", 10),
                            "cifar100": (datasets.CIFAR100, "cifar-100-python", 100)}[name]
    if not (data_dir / folder).is_dir() and not download:
        raise DatasetNotFoundError(name, [data_dir / folder], f"the extracted python version ({folder}/)",
                                   CIFAR_OBTAIN, CIFAR_DOWNLOAD)
    try:
        train = cls(str(data_dir), train=True, download=download,
                    transform=cifar_transforms(True, augment, name, policy))
        test = cls(str(data_dir), train=False, download=download, transform=cifar_transforms(False, dataset=name))
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise DatasetNotFoundError(name, [data_dir / folder], f"an intact {folder}/ ({err})",
                                   CIFAR_OBTAIN, CIFAR_DOWNLOAD) from err
    return train, test, DatasetInfo(name, classes, 3, (32, 32), None)


def _build_imagenet(data_dir: Path, augment: bool, policy: str | None, erasing: float):
    from torchvision import datasets

    roots = [data_dir, data_dir / "imagenet", data_dir / "ILSVRC2012"]
    root = next((r for r in roots if (r / "train").is_dir() and (r / "val").is_dir()), None)
    expected = "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (ImageFolder layout, val sorted into class folders)"
    if root is None:
        raise DatasetNotFoundError("imagenet", roots, expected, IMAGENET_OBTAIN)
    try:
        train = datasets.ImageFolder(str(root / "train"), transform=imagenet_transforms(True, augment, policy=policy, erasing=erasing))
        val = datasets.ImageFolder(str(root / "val"), transform=imagenet_transforms(False))
    except FileNotFoundError as err:  # a class folder without images, or no class folders at all
        raise DatasetNotFoundError("imagenet", [root], f"{expected} ({err})", IMAGENET_OBTAIN) from err
    if train.classes != val.classes:
        raise DatasetNotFoundError("imagenet", [root], f"{expected}; train/ has {len(train.classes)} classes, "
                                   f"val/ has {len(val.classes)} different ones", IMAGENET_OBTAIN)
    return train, val, DatasetInfo("imagenet", len(train.classes), 3, (224, 224), None)


# ----------------------------------------------------------------------------------------------------


def _event_splits(name: str, root: Path, cache_root: Path, download: bool, seed: int, label_order: str,
                  digits_config: DigitsDVSConfig):
    """``({split: (samples, source files)}, (H, W), classes)`` of an event dataset (one of
    ``EVENT_DATASETS``), before integration."""
    if name == "digits-dvs":
        return _find_digits(cache_root, seed, digits_config), (digits_config.canvas,) * 2, 10
    if name in BAND_DATASETS:
        cfg = bands_config(name)
        return _find_bands(cache_root, seed, cfg), (cfg.view,) * 2, cfg.classes
    if name == "dvsgesture":
        if label_order not in ("ibm", "spikingjelly"):
            raise ValueError(f"label_order must be 'ibm' or 'spikingjelly', got {label_order!r}")
        label_map = SPIKINGJELLY_GESTURE_TARGET if label_order == "spikingjelly" else tuple(range(11))
        return _find_gesture(root, download, label_map), DVS_SIZE, 11
    return _find_cifar10dvs(root, download), DVS_SIZE, 10


def build_datasets(name: str, data_dir: str | None = None, T: int | None = None, download: bool = False,
                   augment: bool = True, cache_dir: str | None = None, *, seed: int = 0,
                   label_order: str = "ibm", aug_policy: str | None = None, imagenet_erasing: float = 0.25,
                   digits_config: DigitsDVSConfig = DigitsDVSConfig()) -> tuple[Dataset, Dataset, DatasetInfo]:
    """``(train_set, test_set, info)`` for one of ``DATASETS``; samples are ``(x, label)``.

    Event data: x float32 ``[T, 2, H, W]`` of event counts; T defaults to 16 (DVS) or 4 (``GENERATED``).
    Static data: x float32 ``[3, H, W]``, normalised. ``augment`` applies to the train set only.
    ``data_dir`` defaults to ``./data``; integrated frames are cached under ``cache_dir`` (default
    ``<data_dir>/cache``). ``seed`` fixes the simulation (and split) of a ``GENERATED`` dataset. ``label_order``
    ("ibm": class-1, or "spikingjelly") picks DVS128 Gesture's target numbering. ``aug_policy`` names
    the RandAugment policy of image data (``augment.POLICIES``; default: the one the authors run on
    that dataset); event data always uses ``EventAugment``. ``imagenet_erasing`` is the probability of
    ImageNet's per-sample random erasing (CIFAR's runs on the mixed batch: ``augment.erase_batch``). The data folder is checked
    (``check_data_dir``) before anything is read or created.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    check_policy(aug_policy)
    if name in EVENT_DATASETS and aug_policy is not None:
        raise ValueError(f"aug_policy {aug_policy!r} is for image datasets; {name} is augmented by EventAugment")
    T = DEFAULT_T.get(name) if T is None else T
    if T is not None and T < 1:
        raise ValueError(f"T must be a positive number of frames, got {T}")
    root = check_data_dir(data_dir, name, download, cache_dir)
    if name in ("cifar10", "cifar100"):
        return _build_cifar(name, root, download, augment, aug_policy)
    if name == "imagenet":
        return _build_imagenet(root, augment, aug_policy, imagenet_erasing)
    cache_root = Path(cache_dir).expanduser() if cache_dir else root / "cache"
    splits, size, num_classes = _event_splits(name, root, cache_root, download, seed, label_order, digits_config)
    out = []
    for split, (samples, sources) in splits.items():
        files = cache_frames(samples, sources, name, split, T, size, cache_root)
        transform = EventAugment() if split == "train" and augment else None
        out.append(EventFrames(files, [s.label for s in samples], transform))
    return out[0], out[1], DatasetInfo(name, num_classes, 2, size, T)


# ----------------------------------------------------------------------------------------------------
# The raw event samples of a split (``python show_events.py`` draws them).


def event_samples(name: str, data_dir: str | None = None, split: str = "train", download: bool = False,
                  seed: int = 0) -> tuple[list[EventSample], tuple[int, int]]:
    """The raw event samples of one split of an event dataset, and the sensor size ``(H, W)``."""
    if name not in EVENT_DATASETS:
        raise ValueError(f"{name!r} is not an event dataset; use {', '.join(EVENT_DATASETS)}")
    root = check_data_dir(data_dir, name, download, writes_cache=name in GENERATED)  # their events are cached
    splits, size, _ = _event_splits(name, root, root / "cache", download, seed, "ibm", DigitsDVSConfig())
    return splits[split][0], size
