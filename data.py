"""Datasets for Max-Former: event streams turned into frames, static images, and the paper's augmentations.

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
  event-camera simulation (``simulate_digit_events``); needs no download.

Every event sample goes through the same path: events -> ``integrate_frames`` (T slices of equal
event count, two polarity channels) -> per-sample npz cache -> ``EventFrames`` -> optional
``EventAugment`` (train only). ``MixupCutmix`` is the batch-level part of the recipe.

Static datasets: ``cifar10`` / ``cifar100`` through torchvision and ``imagenet`` from an ImageFolder
tree, with the transforms of the authors' configuration files (see ``cifar_transforms`` and
``imagenet_transforms``).

Nothing is ever downloaded unless ``download=True``; a missing dataset raises
``DatasetNotFoundError`` saying what was expected where and how to get it.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import Tensor
from torch.utils.data import Dataset
from tqdm import tqdm

DATASETS: tuple[str, ...] = ("digits-dvs", "dvsgesture", "cifar10dvs", "cifar10", "cifar100", "imagenet")
DEFAULT_DATA_DIR = "data"
DEFAULT_T = {"digits-dvs": 4, "dvsgesture": 16, "cifar10dvs": 16}
DVS_SIZE = (128, 128)  # (H, W) of the DVS128 sensor used by both event datasets
INTEGRATION_VERSION = 1  # bump when integrate_frames or a reader's coordinate mapping changes
SIMULATION_VERSION = 1  # bump when simulate_digit_events changes

CIFAR10DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# SpikingJelly stores Gesture samples in folders '0'..'10' and torchvision numbers them in string order,
# so the authors' target for IBM class c (1..11) is this table's entry c-1 (DATASETS.md section 1.6).
# Use it (label_order="spikingjelly") to line labels up with the released DVS-Gesture checkpoint.
SPIKINGJELLY_GESTURE_TARGET = (0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 2)


@dataclass
class DatasetInfo:
    name: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]  # (H, W) of one frame/image as the model sees it
    T: int | None  # event datasets: frames per sample; static datasets: None
    is_event: bool

    def model_overrides(self) -> dict[str, int]:
        """``maxformer.create_model`` overrides that size a model for this data (classes, channels,
        resolution, and T for event data)."""
        sized = dict(num_classes=self.num_classes, in_channels=self.in_channels, img_size=self.image_size[0])
        return sized if self.T is None else {**sized, "T": self.T}


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


# ----------------------------------------------------------------------------------------------------
# Events and readers. One event array per recording/sample, fields t (us), x, y, p (0 or 1).

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])


def make_events(t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Pack four equally long arrays into one structured event array (``EVENT_DTYPE``)."""
    events = np.empty(len(t), EVENT_DTYPE)
    events["t"], events["x"], events["y"], events["p"] = t, x, y, np.asarray(p) != 0
    return events


def read_aedat31(path: str | Path) -> np.ndarray:
    """Polarity events of an AEDAT 3.1 file (DVS128 Gesture originals), in file order.

    Written here rather than taken from tonic 1.7.0: ``tonic.io.read_dvs_ibm`` fails to unpack the
    header reader's result, and ``get_aer_events_from_file`` neither skips non-polarity packets nor
    applies the packet's timestamp overflow. Layout (DATASETS.md 1.2, little-endian): CRLF text
    header up to ``#!END-HEADER\\r\\n``; then packets of a 28-byte header ``<hhiiiiii`` (eventType,
    source, eventSize, tsOffset, tsOverflow, capacity, number, valid) and ``capacity * eventSize``
    bytes. A polarity event (type 1) is uint32 data ``x<<17 | y<<2 | p<<1 | valid`` and int32
    timestamp; time = overflow << 31 | timestamp. Like SpikingJelly, the valid bit is not checked.
    """
    raw = Path(path).read_bytes()
    marker = b"#!END-HEADER\r\n"
    end = raw.find(marker)
    if not raw.startswith(b"#!AER-DAT3") or end < 0:
        raise ValueError(f"{path}: not an AEDAT 3.x file (expected a '#!AER-DAT3.1' header ending in "
                         f"'#!END-HEADER' with CRLF line ends)")
    pos, chunks = end + len(marker), []
    while pos < len(raw):
        if pos + 28 > len(raw):
            raise ValueError(f"{path}: truncated AEDAT 3.1 packet header at byte {pos}")
        etype, _, esize, _, overflow, capacity, number, _ = struct.unpack_from("<hhiiiiii", raw, pos)
        body, pos = pos + 28, pos + 28 + capacity * esize
        if pos > len(raw):
            raise ValueError(f"{path}: truncated AEDAT 3.1 packet at byte {body} ({capacity} x {esize} bytes)")
        if etype != 1:
            continue
        ev = np.frombuffer(raw, np.dtype([("data", "<u4"), ("ts", "<i4")]), count=number, offset=body)
        data = ev["data"]
        chunks.append(make_events((np.int64(overflow) << 31) | ev["ts"].astype(np.int64),
                                  (data >> 17) & 0x7FFF, (data >> 2) & 0x7FFF, (data >> 1) & 1))
    return np.concatenate(chunks) if chunks else np.empty(0, EVENT_DTYPE)


def read_aedat2_cifar10dvs(path: str | Path) -> np.ndarray:
    """Events of an original CIFAR10-DVS AEDAT 2.0 file, read with tonic's AEDAT 2.0 reader.

    Body: big-endian uint32 address and timestamp (us). Raw DVS128 bits: polarity bit 0, x bits 1-7,
    y bits 8-14. Coordinates follow SpikingJelly (the authors' pipeline, DATASETS.md 2.3): x and y are
    swapped and both flipped, ``x = 127 - raw_y, y = 127 - raw_x, p = 1 - raw_p``.
    """
    from tonic.io import get_aer_events_from_file, read_aedat_header_from_file

    try:
        version, start, _ = read_aedat_header_from_file(str(path))
    except (UnboundLocalError, ValueError, IndexError) as err:
        raise ValueError(f"{path}: not an AEDAT 2.0 file (expected '#!AER-DAT2.0' header lines)") from err
    if not 2 <= version < 3:
        raise ValueError(f"{path}: AEDAT version {version}, expected 2.0")
    ev = get_aer_events_from_file(str(path), version, start)
    a = ev["address"].astype(np.int64)
    return make_events(ev["timeStamp"], 127 - ((a & 0x7F00) >> 8), 127 - ((a & 0xFE) >> 1), 1 - (a & 1))


def read_aedat4(path: str | Path) -> np.ndarray:
    """Events of an AEDAT 4.0 file (tonic's CIFAR10-DVS copy) via ``tonic.io.read_aedat4``.

    Coordinates and polarity are used as stored (``on`` -> p); DATASETS.md 2.5 notes that DV's
    2.0 -> 4.0 conversion may not match SpikingJelly's swap-and-flip of the originals.
    """
    from tonic.io import read_aedat4 as tonic_read_aedat4

    ev = tonic_read_aedat4(str(path))
    return make_events(ev["t"], ev["x"], ev["y"], ev["on"])


def read_tonic_gesture_npy(path: str | Path) -> np.ndarray:
    """Events of tonic's DVS128 Gesture copy: an N x 4 array with columns x, y, p, t in milliseconds."""
    a = np.load(path)
    if a.ndim != 2 or a.shape[1] != 4:
        raise ValueError(f"{path}: expected an N x 4 array (x, y, p, t_ms), got shape {a.shape}")
    return make_events(np.round(a[:, 3] * 1000).astype(np.int64), a[:, 0], a[:, 1], a[:, 2])


# ----------------------------------------------------------------------------------------------------
# Frames (DATASETS.md section 3, SpikingJelly's split_by='number').


def integrate_frames(events: np.ndarray, T: int, height: int, width: int) -> np.ndarray:
    """Event counts ``[T, 2, H, W]`` (float32) from events in stored order.

    Slice i < T-1 holds events ``[i*di, (i+1)*di)`` with ``di = N // T``; the last slice holds the
    rest, so with N < T everything lands in the last frame. Channel 0 counts ``p == 0``, channel 1
    every other p; event (x, y) adds 1 to ``frame[c, y, x]``. Counts are not clipped.
    """
    n = len(events)
    x, y = events["x"].astype(np.int64), events["y"].astype(np.int64)
    if n and (x.min() < 0 or y.min() < 0 or x.max() >= width or y.max() >= height):
        raise ValueError(f"event coordinates x in [{x.min()}, {x.max()}], y in [{y.min()}, {y.max()}] "
                         f"fall outside the {height}x{width} sensor")
    di = n // T
    frame = np.full(n, T - 1) if di == 0 else np.minimum(np.arange(n) // di, T - 1)
    channel = (events["p"] != 0).astype(np.int64)
    flat = ((frame * 2 + channel) * height + y) * width + x
    return np.bincount(flat, minlength=T * 2 * height * width).reshape(T, 2, height, width).astype(np.float32)


@dataclass(frozen=True)
class EventSample:
    """One sample to integrate: a name, its label and a function returning its events."""

    name: str
    label: int
    load: Callable[[], np.ndarray] = field(compare=False)


def save_npz(path: Path, compressed: bool, **arrays: np.ndarray) -> None:
    """Write an npz through a temporary file, so an interrupted run never leaves a half-written one."""
    tmp = path.with_name(path.stem + ".tmp")
    with open(tmp, "wb") as fh:
        (np.savez_compressed if compressed else np.savez)(fh, **arrays)
    os.replace(tmp, path)


def _file_identity(paths: Sequence[Path]) -> list[tuple[str, int, int]]:
    stats = ((p, p.stat()) for p in sorted(set(paths)))
    return [(str(p.resolve()), s.st_size, s.st_mtime_ns) for p, s in stats]


def cache_frames(samples: Sequence[EventSample], sources: Sequence[Path], dataset: str, split: str, T: int,
                 size: tuple[int, int], cache_root: Path) -> list[Path]:
    """Integrate each sample once into ``<cache_root>/<dataset>/<split>-T<T>-<key>/<i>.npz``.

    The key hashes everything that changes the frames: dataset, split, T, frame size, the integration
    version, the sample names and the identity (path, size, mtime) of every source file. A folder is
    trusted once its ``complete.json`` exists; an interrupted run resumes where it stopped.
    """
    key = hashlib.sha1(json.dumps({
        "dataset": dataset, "split": split, "T": T, "size": list(size), "version": INTEGRATION_VERSION,
        "names": [s.name for s in samples], "sources": _file_identity(sources),
    }).encode()).hexdigest()[:16]
    folder = Path(cache_root) / dataset / f"{split}-T{T}-{key}"
    files = [folder / f"{i:06d}.npz" for i in range(len(samples))]
    if (folder / "complete.json").exists():
        return files
    folder.mkdir(parents=True, exist_ok=True)
    todo = [(s, f) for s, f in zip(samples, files) if not f.exists()]
    for sample, file in tqdm(todo, desc=f"integrating {dataset} {split} frames (T={T})", unit="sample"):
        frames = integrate_frames(sample.load(), T, *size)
        compact = frames.astype(np.uint16) if frames.max(initial=0) <= np.iinfo(np.uint16).max else frames
        save_npz(file, compressed=True, frames=compact)
    (folder / "complete.json").write_text(json.dumps({"dataset": dataset, "split": split, "T": T,
                                                      "samples": len(samples)}))
    return files


class EventFrames(Dataset):
    """Cached event frames: ``(float32 [T, 2, H, W], label)``, optionally augmented."""

    def __init__(self, files: Sequence[Path], labels: Sequence[int],
                 transform: Callable[[Tensor], Tensor] | None = None) -> None:
        self.files, self.targets, self.transform = list(files), list(labels), transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        with np.load(self.files[i]) as z:
            x = torch.from_numpy(z["frames"].astype(np.float32))
        return (self.transform(x) if self.transform else x), self.targets[i]


# ----------------------------------------------------------------------------------------------------
# Augmentation: per-sample event augmentation (train set) and batch-level Mixup/CutMix.


@dataclass
class EventAugment:
    """The authors' event recipe on one sample ``[T, C, H, W]``: random horizontal flip, then one
    TrivialAugment-style op (``SNNAugmentWide``), identical for all T frames.

    The op is drawn uniformly from identity, shear-x, translate-x, translate-y, rotate and cut-out,
    its magnitude uniformly from [0, max] with a random sign. Maxima follow the authors' policy:
    shear 0.3 rad, rotation 30 degrees, translation 5 px of a 128-px frame (a fraction of the size
    here, so it scales to other frame sizes), cut-out of a square covering 0.1%-11% of the frame.
    Geometric ops use nearest-neighbour sampling and fill 0 so counts stay counts.
    """

    flip_p: float = 0.5
    shear: float = 0.3
    rotate_deg: float = 30.0
    translate: float = 5 / 128
    cutout_area: tuple[float, float] = (0.001, 0.11)
    ops: tuple[str, ...] = ("identity", "shear_x", "translate_x", "translate_y", "rotate", "cutout")

    def __call__(self, x: Tensor) -> Tensor:
        from torchvision.transforms.v2 import functional as tvf

        if torch.rand(()) < self.flip_p:
            x = tvf.horizontal_flip(x)
        op = self.ops[int(torch.randint(len(self.ops), ()))]
        m = float(torch.rand(())) * (1.0 if torch.rand(()) < 0.5 else -1.0)
        h, w = x.shape[-2:]
        nearest = tvf.InterpolationMode.NEAREST
        if op == "shear_x":
            return tvf.affine(x, angle=0.0, translate=[0, 0], scale=1.0, shear=[math.degrees(m * self.shear), 0.0],
                              interpolation=nearest, fill=0.0)
        if op in ("translate_x", "translate_y"):
            shift = round(m * self.translate * (w if op == "translate_x" else h))
            translate = [shift, 0] if op == "translate_x" else [0, shift]
            return tvf.affine(x, angle=0.0, translate=translate, scale=1.0, shear=[0.0, 0.0],
                              interpolation=nearest, fill=0.0)
        if op == "rotate":
            return tvf.rotate(x, m * self.rotate_deg, interpolation=nearest, fill=0.0)
        if op == "cutout":
            lo, hi = self.cutout_area
            side = min(h, w, max(1, round(math.sqrt((lo + (hi - lo) * abs(m)) * h * w))))
            i, j = int(torch.randint(h - side + 1, ())), int(torch.randint(w - side + 1, ()))
            return tvf.erase(x, i, j, side, side, torch.tensor(0.0))
        if op != "identity":
            raise ValueError(f"unknown EventAugment op {op!r}")
        return x


class MixupCutmix:
    """Batch-level Mixup (Zhang et al. 2018) / CutMix (Yun et al. 2019) with label smoothing.

    With probability ``prob`` a batch is mixed with its reverse (sample b with sample B-1-b) using
    ``lam ~ Beta(alpha, alpha)``: CutMix (with probability ``switch_prob`` when both alphas are > 0)
    pastes a box of area ~(1-lam) and then sets lam to the exact kept area; Mixup blends
    ``lam * x + (1-lam) * x_rev``. Targets are ``lam * smooth(y) + (1-lam) * smooth(y_rev)`` with
    ``smooth`` putting ``1 - s + s/K`` on the class and ``s/K`` elsewhere. Works on ``[B, C, H, W]``
    and ``[B, T, C, H, W]`` (batch first, spatial dims last); the same box covers all T frames.
    The authors' settings: event mixup 0.5, cutmix 0.1, prob 0.5; CIFAR 0.5, 0.5, 1.0; ImageNet
    0.2, 1.0, 0.5; switch 0.5 and smoothing 0.1 everywhere.
    """

    def __init__(self, num_classes: int, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, prob: float = 1.0,
                 switch_prob: float = 0.5, label_smoothing: float = 0.1) -> None:
        self.num_classes, self.mixup_alpha, self.cutmix_alpha = num_classes, mixup_alpha, cutmix_alpha
        self.prob, self.switch_prob, self.label_smoothing = prob, switch_prob, label_smoothing

    def smooth(self, y: Tensor) -> Tensor:
        off = self.label_smoothing / self.num_classes
        return nnf.one_hot(y, self.num_classes).float() * (1.0 - self.label_smoothing) + off

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        lam = 1.0
        if (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and torch.rand(()) < self.prob:
            cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha <= 0 or torch.rand(()) < self.switch_prob)
            alpha = self.cutmix_alpha if cutmix else self.mixup_alpha
            lam = float(torch.distributions.Beta(alpha, alpha).sample())
            if cutmix:
                h, w = x.shape[-2:]
                ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
                cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
                y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
                x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
                x = x.clone()
                x[..., y0:y1, x0:x1] = x.flip(0)[..., y0:y1, x0:x1]
                lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
            else:
                x = x * lam + x.flip(0) * (1.0 - lam)
        target = self.smooth(y)
        return x, target * lam + target.flip(0) * (1.0 - lam)


# ----------------------------------------------------------------------------------------------------
# DVS128 Gesture.


def _subdirs(data_dir: Path, bases: Sequence[str], subs: Sequence[str]) -> list[Path]:
    return [data_dir / b / s for b in bases for s in subs]


def _read_labels_csv(path: Path) -> np.ndarray:
    rows = np.loadtxt(path, dtype=np.int64, delimiter=",", skiprows=1, ndmin=2)
    if rows.shape[1] != 3 or rows.size and (rows[:, 0].min() < 1 or rows[:, 0].max() > 11):
        raise ValueError(f"{path}: expected rows 'class,startTime_usec,endTime_usec' with class 1..11")
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
                                           functools.partial(_time_window, read_trial, aedat, int(start), int(end))))
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
        samples = [EventSample(f"{f.parent.name}_{f.stem}", label_map[int(f.stem)],
                               functools.partial(read_tonic_gesture_npy, f)) for f in files]
        splits[split] = samples, files
    return splits


GESTURE_OBTAIN = ("IBM, https://research.ibm.com/interactive/dvsgesture/ (DvsGesture.tar.gz, extract it), "
                  "or tonic's preprocessed copy (--download)")
GESTURE_DOWNLOAD = "tonic's preprocessed copy (figshare; 1077/264 samples, not the paper's IBM split)"


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

CIFAR10DVS_OBTAIN = ("figshare, https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671 (ten per-class "
                     "zips, extract them), or tonic's AEDAT 4 copy (--download)")


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
        raise DatasetNotFoundError("cifar10dvs", roots, expected, CIFAR10DVS_OBTAIN, "tonic's AEDAT 4 copy (figshare)")
    per_class = {c: sorted((root / c).rglob("*.aedat")) for c in CIFAR10DVS_CLASSES}
    reader = read_aedat2_cifar10dvs
    if not any(per_class.values()):
        per_class, reader = {c: sorted((root / c).rglob("*.aedat4")) for c in CIFAR10DVS_CLASSES}, read_aedat4
    empty = [c for c, files in per_class.items() if not files]
    if empty:
        raise DatasetNotFoundError("cifar10dvs", [root], f"{expected}; no files for: {', '.join(empty)}",
                                   CIFAR10DVS_OBTAIN, "tonic's AEDAT 4 copy (figshare)")
    splits = {"train": ([], []), "test": ([], [])}
    for label, files in enumerate(per_class.values()):
        for split, part in zip(("train", "test"), split_90_10(files)):
            splits[split][0].extend(EventSample(f.stem, label, functools.partial(reader, f)) for f in part)
            splits[split][1].extend(part)
    return splits


# ----------------------------------------------------------------------------------------------------
# digits-dvs: the offline default.


@dataclass(frozen=True)
class DigitsDVSConfig:
    """Event-camera simulation of scikit-learn's 8x8 digits, in the spirit of N-MNIST's saccades.

    Each digit is upsampled (bilinear) to ``digit_size`` px and centred on a black ``canvas``; it moves
    along a closed triangle through the displacements ``path`` (px, (dx, dy)), ``steps`` steps of
    ``step_us`` each, with bilinear sub-pixel shifts and a fixed per-sample offset uniform in
    +-``offset_px``. Intensity ``background + (1 - background) * image``; log intensity plus Gaussian
    noise (``log_noise`` per step). Each pixel has a contrast threshold ~ N(``threshold``,
    ``threshold_std``) (at least ``threshold_min``); when its log intensity has moved n thresholds from
    its reference it emits n events (p=1 for increases), timestamps interpolated linearly inside the
    step, and the reference moves n thresholds. Background noise: Poisson events at ``noise_hz`` per pixel.
    """

    canvas: int = 24
    digit_size: int = 20
    path: tuple[tuple[float, float], ...] = ((0.0, 0.0), (2.0, 3.5), (4.0, 0.0))
    steps: int = 300
    step_us: int = 1000
    offset_px: float = 0.5
    background: float = 0.2
    log_noise: float = 0.01
    threshold: float = 0.25
    threshold_std: float = 0.03
    threshold_min: float = 0.05
    noise_hz: float = 0.2


def _saccade(cfg: DigitsDVSConfig) -> Tensor:
    """Displacements ``[steps + 1, 2]`` (dx, dy) along the closed path, centred on its bounding box."""
    corners = torch.tensor(cfg.path + cfg.path[:1], dtype=torch.float64)
    s = torch.linspace(0, len(cfg.path), cfg.steps + 1, dtype=torch.float64)
    seg = s.floor().long().clamp(max=len(cfg.path) - 1)
    pos = corners[seg] + (s - seg)[:, None] * (corners[seg + 1] - corners[seg])
    return pos - (corners.min(0).values + corners.max(0).values) / 2


def simulate_digit_events(images: np.ndarray, cfg: DigitsDVSConfig = DigitsDVSConfig(),
                          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Event streams for images ``[N, h, w]`` in [0, 1], vectorised over samples.

    Returns ``(events, offsets)``: all events sample by sample (time-sorted within a sample) and
    ``offsets[N + 1]`` so sample i is ``events[offsets[i]:offsets[i + 1]]``. Deterministic given the seed.
    Runs on one CPU thread: the per-step tensors are small, and with more threads on a busy 2-core
    machine the same work took 40x longer.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _simulate(images, cfg, seed)
    finally:
        torch.set_num_threads(threads)


def _simulate(images: np.ndarray, cfg: DigitsDVSConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    n, size, pad = len(images), cfg.canvas, (cfg.canvas - cfg.digit_size) // 2
    digits = torch.as_tensor(images, dtype=torch.float32)[:, None]  # [n, 1, h, w]
    canvas = torch.zeros(n, 1, size, size)
    canvas[..., pad:pad + cfg.digit_size, pad:pad + cfg.digit_size] = nnf.interpolate(
        digits, size=(cfg.digit_size,) * 2, mode="bilinear", align_corners=False)
    offset = (torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1) * cfg.offset_px
    shift = (_saccade(cfg)[:, None] + offset).float()  # [steps + 1, n, 2] displacement in px
    threshold = cfg.threshold + cfg.threshold_std * torch.randn(n, size * size, generator=g)
    threshold = threshold.clamp(min=cfg.threshold_min)  # [n, P], P = size * size pixels
    identity = nnf.affine_grid(torch.eye(2, 3)[None], [1, 1, size, size], align_corners=False)  # [1, H, W, 2]

    def log_intensity(k: int) -> Tensor:  # [n, P] at step k
        grid = identity - (2.0 * shift[k] / size)[:, None, None, :]  # output(p) = input(p - shift)
        moved = nnf.grid_sample(canvas, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        light = cfg.background + (1 - cfg.background) * moved.view(n, -1)
        return light.log() + cfg.log_noise * torch.randn(n, size * size, generator=g)

    prev = ref = log_intensity(0)
    chunks = []
    for k in tqdm(range(1, cfg.steps + 1), desc="simulating digit events", unit="step", leave=False):
        cur = log_intensity(k)
        pixel, frac, on, ref = _threshold_crossings(prev, cur, ref, threshold)
        chunks.append((pixel, ((k - 1 + frac.double()) * cfg.step_us).long(), on))
        prev = cur
    chunks.append(_background_noise(n, size * size, cfg.noise_hz, cfg.steps * cfg.step_us, g))
    flat, t, p = (torch.cat(parts).numpy() for parts in zip(*chunks))
    sample, pixel = flat // (size * size), flat % (size * size)
    order = np.lexsort((t, sample))  # sample by sample, time-sorted within (stable: ties keep emission order)
    events = make_events(t[order], pixel[order] % size, pixel[order] // size, p[order])
    return events, np.concatenate([[0], np.cumsum(np.bincount(sample, minlength=n))])


def _threshold_crossings(prev: Tensor, cur: Tensor, ref: Tensor, threshold: Tensor):
    """Events of one step in which log intensity goes linearly from ``prev`` to ``cur`` (all ``[n, P]``).

    A pixel whose ``cur`` lies n >= 1 thresholds from its reference fires n events, the j-th when the
    line crosses ``ref + j * threshold * sign``. Returns the flat ``n * P`` index and the crossing time
    (fraction of the step) of every event, its polarity (True = ON) and the moved references.
    """
    diff = cur - ref
    count = torch.floor(diff.abs() / threshold).long()  # [n, P]
    firing = count.view(-1).nonzero().squeeze(1)
    c = count.view(-1)[firing]
    flat = torch.repeat_interleave(firing, c)  # one entry per event
    j = torch.arange(len(flat)) - torch.repeat_interleave(c.cumsum(0) - c, c) + 1  # 1..n within a pixel
    sign = diff.sign().view(-1)[flat]
    level = ref.view(-1)[flat] + sign * j * threshold.view(-1)[flat]
    p0, p1 = prev.view(-1)[flat], cur.view(-1)[flat]
    frac = ((level - p0) / torch.where(p1 == p0, 1.0, p1 - p0)).clamp(0, 1)
    return flat, frac, sign > 0, ref + diff.sign() * count * threshold


def _background_noise(n: int, pixels: int, rate_hz: float, duration_us: int, g: torch.Generator):
    """Poisson background events: ``rate_hz`` per pixel, uniform in time, pixel and polarity."""
    per_sample = torch.poisson(torch.full((n,), rate_hz * pixels * duration_us * 1e-6, dtype=torch.float64), generator=g)
    m = int(per_sample.sum())
    flat = torch.repeat_interleave(torch.arange(n), per_sample.long()) * pixels + torch.randint(pixels, (m,), generator=g)
    return flat, torch.randint(duration_us, (m,), generator=g), torch.rand(m, generator=g) < 0.5


def _digit_slice(read: Callable[[Path], dict], path: Path, i: int) -> np.ndarray:
    z = read(path)
    return z["events"][z["offsets"][i]:z["offsets"][i + 1]]


def _load_npz(path: Path) -> dict:
    with np.load(path) as z:
        return dict(z)


def _find_digits(cache_root: Path, seed: int, cfg: DigitsDVSConfig, test_fraction: float = 0.2):
    """Simulate (once, cached by config and seed) and split 80/20, stratified, with a fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    spec = {"cfg": asdict(cfg), "seed": seed, "n": len(digits.target), "version": SIMULATION_VERSION}
    key = hashlib.sha1(json.dumps(spec).encode()).hexdigest()[:16]
    path = Path(cache_root) / "digits-dvs" / f"events-{key}.npz"
    if not path.exists():
        events, offsets = simulate_digit_events(digits.images / 16.0, cfg, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_npz(path, compressed=False, events=events, offsets=offsets, labels=digits.target)
    train_idx, test_idx = train_test_split(np.arange(len(digits.target)), test_size=test_fraction,
                                           stratify=digits.target, random_state=seed)
    read = functools.lru_cache(maxsize=1)(_load_npz)
    def samples(indices: np.ndarray) -> list[EventSample]:
        return [EventSample(f"digit_{i}", int(digits.target[i]), functools.partial(_digit_slice, read, path, int(i)))
                for i in sorted(indices)]

    return {"train": (samples(train_idx), [path]), "test": (samples(test_idx), [path])}


# ----------------------------------------------------------------------------------------------------
# Static images.

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def cifar_transforms(train: bool, augment: bool = True, crop_padding: int = 0) -> Callable[[object], Tensor]:
    """The authors' CIFAR recipe (cifar10-100/cifar10.yaml), with torchvision in place of timm.

    Train: horizontal flip, RandAugment with 1 op at magnitude 9 (timm 'rand-m9-n1-mstd0.4-inc1';
    torchvision has no magnitude noise), ToTensor, Normalize (CIFAR mean/std), RandomErasing p=0.25
    filling zeros. The yaml sets the resized-crop scale to (1, 1), i.e. no crop; ``crop_padding`` > 0
    adds the common RandomCrop(32, padding) instead. Test: ToTensor + Normalize.
    """
    from torchvision.transforms import v2

    tail = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(CIFAR_MEAN, CIFAR_STD)]
    if not (train and augment):
        return v2.Compose(tail)
    crop = [v2.RandomCrop(32, padding=crop_padding)] if crop_padding else []
    return v2.Compose(crop + [v2.RandomHorizontalFlip(), v2.RandAugment(num_ops=1, magnitude=9)] + tail
                      + [v2.RandomErasing(p=0.25, value=0)])


def imagenet_transforms(train: bool, augment: bool = True, size: int = 224) -> Callable[[object], Tensor]:
    """The authors' ImageNet recipe (imagenet/conf/*.yml, aa 'rand-m9-mstd0.5-inc1', reprob 0.25), torchvision-only.

    Train: RandomResizedCrop(224, bicubic), horizontal flip, RandAugment with 2 ops (timm's default
    count) at magnitude 9, ToTensor, Normalize (ImageNet mean/std), RandomErasing p=0.25 with random
    normal values (timm's 'pixel' mode). Val: Resize(256, bicubic), CenterCrop(224), ToTensor, Normalize.
    """
    from torchvision.transforms import v2

    bicubic = v2.InterpolationMode.BICUBIC
    tail = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if not (train and augment):
        return v2.Compose([v2.Resize(round(size * 256 / 224), interpolation=bicubic), v2.CenterCrop(size)] + tail)
    return v2.Compose([v2.RandomResizedCrop(size, interpolation=bicubic), v2.RandomHorizontalFlip(),
                       v2.RandAugment(num_ops=2, magnitude=9, interpolation=bicubic)] + tail
                      + [v2.RandomErasing(p=0.25, value="random")])


def _build_cifar(name: str, data_dir: Path, download: bool, augment: bool, crop_padding: int):
    from torchvision import datasets

    cls, folder, classes = {"cifar10": (datasets.CIFAR10, "cifar-10-batches-py", 10),
                            "cifar100": (datasets.CIFAR100, "cifar-100-python", 100)}[name]
    if not (data_dir / folder).is_dir() and not download:
        raise DatasetNotFoundError(name, [data_dir / folder], f"the extracted python version ({folder}/)",
                                   "https://www.cs.toronto.edu/~kriz/cifar.html", "it through torchvision")
    try:
        train = cls(str(data_dir), train=True, download=download, transform=cifar_transforms(True, augment, crop_padding))
        test = cls(str(data_dir), train=False, download=download, transform=cifar_transforms(False))
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise DatasetNotFoundError(name, [data_dir / folder], f"an intact {folder}/ ({err})",
                                   "https://www.cs.toronto.edu/~kriz/cifar.html", "it through torchvision") from err
    return train, test, DatasetInfo(name, classes, 3, (32, 32), None, False)


def _build_imagenet(data_dir: Path, augment: bool):
    from torchvision import datasets

    roots = [data_dir, data_dir / "imagenet", data_dir / "ILSVRC2012"]
    root = next((r for r in roots if (r / "train").is_dir() and (r / "val").is_dir()), None)
    expected = "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (ImageFolder layout, val sorted into class folders)"
    obtain = "https://image-net.org (ILSVRC2012 train and validation images)"
    if root is None:
        raise DatasetNotFoundError("imagenet", roots, expected, obtain)
    try:
        train = datasets.ImageFolder(str(root / "train"), transform=imagenet_transforms(True, augment))
        val = datasets.ImageFolder(str(root / "val"), transform=imagenet_transforms(False))
    except FileNotFoundError as err:  # a class folder without images, or no class folders at all
        raise DatasetNotFoundError("imagenet", [root], f"{expected} ({err})", obtain) from err
    if train.classes != val.classes:
        raise DatasetNotFoundError("imagenet", [root], f"{expected}; train/ has {len(train.classes)} classes, "
                                   f"val/ has {len(val.classes)} different ones", obtain)
    return train, val, DatasetInfo("imagenet", len(train.classes), 3, (224, 224), None, False)


# ----------------------------------------------------------------------------------------------------


def _event_splits(name: str, root: Path, cache_root: Path, download: bool, seed: int, label_order: str,
                  digits_config: DigitsDVSConfig):
    """``({split: (samples, source files)}, (H, W), classes)`` of an event dataset, before integration."""
    if name == "digits-dvs":
        return _find_digits(cache_root, seed, digits_config), (digits_config.canvas,) * 2, 10
    if name == "dvsgesture":
        if label_order not in ("ibm", "spikingjelly"):
            raise ValueError(f"label_order must be 'ibm' or 'spikingjelly', got {label_order!r}")
        label_map = SPIKINGJELLY_GESTURE_TARGET if label_order == "spikingjelly" else tuple(range(11))
        return _find_gesture(root, download, label_map), DVS_SIZE, 11
    if name == "cifar10dvs":
        return _find_cifar10dvs(root, download), DVS_SIZE, 10
    raise ValueError(f"{name!r} is not an event dataset; use digits-dvs, dvsgesture or cifar10dvs")


def build_datasets(name: str, data_dir: str | None = None, T: int | None = None, download: bool = False,
                   augment: bool = True, cache_dir: str | None = None, *, seed: int = 0,
                   label_order: str = "ibm", cifar_crop_padding: int = 0,
                   digits_config: DigitsDVSConfig = DigitsDVSConfig()) -> tuple[Dataset, Dataset, DatasetInfo]:
    """``(train_set, test_set, info)`` for one of ``DATASETS``; samples are ``(x, label)``.

    Event data: x float32 ``[T, 2, H, W]`` of event counts; T defaults to 16 (DVS) or 4 (digits-dvs).
    Static data: x float32 ``[3, H, W]``, normalised. ``augment`` applies to the train set only.
    ``data_dir`` defaults to ``./data``; integrated frames are cached under ``cache_dir`` (default
    ``<data_dir>/cache``). ``seed`` fixes the digits-dvs simulation and split. ``label_order``
    ("ibm": class-1, or "spikingjelly") picks DVS128 Gesture's target numbering.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    root = Path(data_dir or DEFAULT_DATA_DIR).expanduser()
    if name in ("cifar10", "cifar100"):
        return _build_cifar(name, root, download, augment, cifar_crop_padding)
    if name == "imagenet":
        return _build_imagenet(root, augment)
    T = DEFAULT_T[name] if T is None else T
    if T < 1:
        raise ValueError(f"T must be a positive number of frames, got {T}")
    cache_root = Path(cache_dir).expanduser() if cache_dir else root / "cache"
    splits, size, num_classes = _event_splits(name, root, cache_root, download, seed, label_order, digits_config)
    out = []
    for split, (samples, sources) in splits.items():
        files = cache_frames(samples, sources, name, split, T, size, cache_root)
        transform = EventAugment() if split == "train" and augment else None
        out.append(EventFrames(files, [s.label for s in samples], transform))
    return out[0], out[1], DatasetInfo(name, num_classes, 2, size, T, True)


# ----------------------------------------------------------------------------------------------------
# Command line: look at event samples (``python data.py show digits-dvs --out frames.png``).


def event_samples(name: str, data_dir: str | None = None, split: str = "train", download: bool = False,
                  seed: int = 0) -> tuple[list[EventSample], tuple[int, int]]:
    """The raw event samples of one split of an event dataset, and the sensor size ``(H, W)``."""
    root = Path(data_dir or DEFAULT_DATA_DIR).expanduser()
    splits, size, _ = _event_splits(name, root, root / "cache", download, seed, "ibm", DigitsDVSConfig())
    return splits[split][0], size


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
        frames = integrate_frames(events, T, *size)
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
    import argparse

    parser = argparse.ArgumentParser(description="Look at event datasets: frames and raw events of a few samples.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("show", help="write a PNG of a few samples' T frames (ON red, OFF blue) and an x-y-t "
                                    "scatter of one sample's events; print each sample's event statistics")
    p.add_argument("dataset", choices=("digits-dvs", "dvsgesture", "cifar10dvs"), help="event dataset")
    p.add_argument("--out", default="runs/show.png", help="output PNG (default: runs/show.png)")
    p.add_argument("--data-dir", default=None, help="dataset folder (default: ./data)")
    p.add_argument("--download", action="store_true", help="fetch a missing dataset that data.py can download")
    p.add_argument("--split", choices=("train", "test"), default="train", help="split to draw from (default: train)")
    p.add_argument("-T", type=int, default=None, help="frames per sample (default: the dataset's, 4 or 16)")
    p.add_argument("--samples", type=int, default=3,
                   help="number of samples: the first of each of the first N labels (default: 3)")
    p.add_argument("--index", type=int, nargs="+", default=None, help="show these sample indices instead")
    args = parser.parse_args(argv)
    T = DEFAULT_T[args.dataset] if args.T is None else args.T
    if T < 1 or args.samples < 1:
        parser.error(f"-T ({T}) and --samples ({args.samples}) must be positive")
    try:
        samples, size = event_samples(args.dataset, args.data_dir, args.split, args.download)
    except DatasetNotFoundError as err:
        raise SystemExit(str(err)) from None
    if args.index:
        bad = [i for i in args.index if not 0 <= i < len(samples)]
        if bad:
            parser.error(f"--index {bad} outside the {args.split} split's 0..{len(samples) - 1}")
        picks = [samples[i] for i in args.index]
    else:
        first = {}
        for s in samples:
            first.setdefault(s.label, s)
        picks = [first[label] for label in sorted(first)][:args.samples]
    show(picks, size, T, Path(args.out), f"{args.dataset} {args.split}: T={T} frames of equal event count")


if __name__ == "__main__":
    main()
