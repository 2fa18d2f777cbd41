"""Event recordings and the frames a spiking model sees (paper section 4, neuromorphic datasets).

    events = read_aedat31("user01_fluorescent.aedat")    # structured array: t (us), x, y, p
    frames = integrate_frames(events, T=16, height=128, width=128)   # float32 [16, 2, 128, 128]

Readers for the file formats of DVS128 Gesture and CIFAR10-DVS (and tonic's copies of both),
``integrate_frames`` (SpikingJelly's ``split_by='number'``, which the authors use), the per-sample
frame cache, ``EventFrames`` (the dataset over that cache) and the event-camera simulation behind the
offline digits-dvs default. File-format facts: docs/reference/datasets.md.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import Tensor
from torch.utils.data import Dataset
from tqdm import tqdm

INTEGRATION_VERSION = 1  # bump when integrate_frames or a reader's coordinate mapping changes
SIMULATION_VERSION = 1  # bump when simulate_digit_events changes


class DataFileError(ValueError):
    """A data file (event recording, labels CSV, cached frames) is unreadable or holds values out of
    range; the message starts with the file's path."""


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
    applies the packet's timestamp overflow. Layout (docs/reference/datasets.md, AEDAT 3.1; little-endian): CRLF text
    header up to ``#!END-HEADER\\r\\n``; then packets of a 28-byte header ``<hhiiiiii`` (eventType,
    source, eventSize, tsOffset, tsOverflow, capacity, number, valid) and ``capacity * eventSize``
    bytes. A polarity event (type 1) is uint32 data ``x<<17 | y<<2 | p<<1 | valid`` and int32
    timestamp; time = overflow << 31 | timestamp. Like SpikingJelly, the valid bit is not checked.
    """
    raw = Path(path).read_bytes()
    marker = b"#!END-HEADER\r\n"
    end = raw.find(marker)
    if not raw.startswith(b"#!AER-DAT3") or end < 0:
        raise DataFileError(f"{path}: not an AEDAT 3.x file (expected a '#!AER-DAT3.1' header ending in "
                            f"'#!END-HEADER' with CRLF line ends)")
    pos, chunks = end + len(marker), []
    while pos < len(raw):
        if pos + 28 > len(raw):
            raise DataFileError(f"{path}: truncated AEDAT 3.1 packet header at byte {pos}")
        etype, _, esize, _, overflow, capacity, number, _ = struct.unpack_from("<hhiiiiii", raw, pos)
        if esize <= 0 or not 0 <= number <= capacity or etype == 1 and esize != 8:
            raise DataFileError(f"{path}: corrupt AEDAT 3.1 packet header at byte {pos} (type {etype}, "
                                f"event size {esize}, {number} of {capacity} events)")
        body, pos = pos + 28, pos + 28 + capacity * esize
        if pos > len(raw):
            raise DataFileError(f"{path}: truncated AEDAT 3.1 packet at byte {body} ({capacity} x {esize} bytes)")
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
    y bits 8-14. Coordinates follow SpikingJelly (the authors' pipeline; docs/reference/datasets.md,
    AEDAT 2.0): x and y are swapped and both flipped, ``x = 127 - raw_y, y = 127 - raw_x, p = 1 - raw_p``.
    """
    from tonic.io import get_aer_events_from_file, read_aedat_header_from_file

    try:
        version, start, _ = read_aedat_header_from_file(str(path))
    except (UnboundLocalError, ValueError, IndexError) as err:
        raise DataFileError(f"{path}: not an AEDAT 2.0 file (expected '#!AER-DAT2.0' header lines)") from err
    if not 2 <= version < 3:
        raise DataFileError(f"{path}: AEDAT version {version}, expected 2.0")
    try:
        ev = get_aer_events_from_file(str(path), version, start)
    except (ValueError, OSError) as err:
        raise DataFileError(f"{path}: unreadable AEDAT 2.0 event data ({err})") from err
    a = ev["address"].astype(np.int64)
    return make_events(ev["timeStamp"], 127 - ((a & 0x7F00) >> 8), 127 - ((a & 0xFE) >> 1), 1 - (a & 1))


def read_aedat4(path: str | Path) -> np.ndarray:
    """Events of an AEDAT 4.0 file (tonic's CIFAR10-DVS copy) via ``tonic.io.read_aedat4``.

    Coordinates and polarity are used as stored (``on`` -> p); docs/reference/datasets.md (tonic's
    AEDAT 4 copy) notes that DV's 2.0 -> 4.0 conversion may not match SpikingJelly's swap-and-flip of
    the originals.
    """
    from tonic.io import read_aedat4 as tonic_read_aedat4

    try:
        ev = tonic_read_aedat4(str(path))
    except (RuntimeError, ValueError, OSError, KeyError) as err:  # tonic's C++ reader raises RuntimeError
        raise DataFileError(f"{path}: not a readable AEDAT 4.0 file ({err})") from err
    return make_events(ev["t"], ev["x"], ev["y"], ev["on"])


def read_tonic_gesture_npy(path: str | Path) -> np.ndarray:
    """Events of tonic's DVS128 Gesture copy: an N x 4 array with columns x, y, p, t in milliseconds."""
    try:
        a = np.load(path)
    except (ValueError, OSError, EOFError) as err:
        raise DataFileError(f"{path}: not a readable .npy event array ({err})") from err
    if a.ndim != 2 or a.shape[1] != 4:
        raise DataFileError(f"{path}: expected an N x 4 array (x, y, p, t_ms), got shape {a.shape}")
    return make_events(np.round(a[:, 3] * 1000).astype(np.int64), a[:, 0], a[:, 1], a[:, 2])


# ----------------------------------------------------------------------------------------------------
# Frames (docs/reference/datasets.md, frame integration: SpikingJelly's split_by='number').


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
    """One sample to integrate: a name, its label, a function returning its events and the file they come from."""

    name: str
    label: int
    load: Callable[[], np.ndarray] = field(compare=False)
    source: Path | None = field(default=None, compare=False)

    def frames(self, events: np.ndarray, T: int, size: tuple[int, int]) -> np.ndarray:
        """``integrate_frames`` of this sample's ``events``; events outside the frame are a
        ``DataFileError`` naming the file they come from."""
        try:
            return integrate_frames(events, T, *size)
        except ValueError as err:
            raise DataFileError(f"{self.source or self.name}: sample {self.name}: {err}") from None


def save_npz(path: Path, compressed: bool, **arrays: np.ndarray) -> None:
    """Write an npz through a temporary file of this process, so neither an interrupted run nor two
    processes integrating at once (one per rank) leave a half-written one."""
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
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
    trusted once its ``complete.json`` exists and none of its files is missing or empty; an interrupted
    run, or a file removed because it was corrupt, is integrated again (only the files that are not there).
    Events outside the frame are a ``DataFileError`` naming the sample's source file.
    """
    key = hashlib.sha1(json.dumps({
        "dataset": dataset, "split": split, "T": T, "size": list(size), "version": INTEGRATION_VERSION,
        "names": [s.name for s in samples], "sources": _file_identity(sources),
    }).encode()).hexdigest()[:16]
    folder = Path(cache_root) / dataset / f"{split}-T{T}-{key}"
    files = [folder / f"{i:06d}.npz" for i in range(len(samples))]
    todo = [(s, f) for s, f in zip(samples, files) if not (f.is_file() and f.stat().st_size > 0)]
    if (folder / "complete.json").exists() and not todo:
        return files
    folder.mkdir(parents=True, exist_ok=True)
    for sample, file in tqdm(todo, desc=f"integrating {dataset} {split} frames (T={T})", unit="sample"):
        frames = sample.frames(sample.load(), T, size)
        compact = frames.astype(np.uint16) if frames.max(initial=0) <= np.iinfo(np.uint16).max else frames
        save_npz(file, compressed=True, frames=compact)
    (folder / "complete.json").write_text(json.dumps({"dataset": dataset, "split": split, "T": T,
                                                      "samples": len(samples)}))
    return files


def load_frames(path: Path) -> np.ndarray:
    """The frames ``[T, 2, H, W]`` (float32) of one cache file. A file that cannot be read, or that holds
    anything but finite frames, is a ``DataFileError`` naming it and the command that rebuilds it."""
    rebuild = f"remove it and run again to integrate it anew: rm '{path}'"
    try:
        with np.load(path) as z:
            frames = z["frames"]
    except Exception as err:  # a damaged npz fails in zipfile, zlib, the .npy header parser, ...: all mean corrupt
        raise DataFileError(f"{path}: corrupt frame cache file ({type(err).__name__}: {err}); {rebuild}") from None
    if frames.ndim != 4 or frames.shape[1] != 2:
        raise DataFileError(f"{path}: cached frames of shape {frames.shape}, expected [T, 2, H, W]; {rebuild}")
    frames = frames.astype(np.float32)
    if not np.isfinite(frames).all():
        raise DataFileError(f"{path}: cached frames hold {int((~np.isfinite(frames)).sum())} non-finite values "
                            f"(NaN or inf); {rebuild}")
    return frames


class EventFrames(Dataset):
    """Cached event frames: ``(float32 [T, 2, H, W], label)``, optionally augmented; every file is
    checked as it is read (``load_frames``)."""

    def __init__(self, files: Sequence[Path], labels: Sequence[int],
                 transform: Callable[[Tensor], Tensor] | None = None) -> None:
        self.files, self.targets, self.transform = list(files), list(labels), transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        x = torch.from_numpy(load_frames(self.files[i]))
        return (self.transform(x) if self.transform else x), self.targets[i]


# ----------------------------------------------------------------------------------------------------
# The event-camera simulation behind the offline default, digits-dvs.


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
    A ``digit_size`` larger than ``canvas`` makes the sensor a window onto a larger scene: it sees the
    central ``canvas`` px of the moving image, so what enters at the edges is scene, not black.
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
    Runs on one CPU thread: the per-step tensors are small, so more threads only add overhead.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _simulate(images, cfg, seed)
    finally:
        torch.set_num_threads(threads)


def _simulate(images: np.ndarray, cfg: DigitsDVSConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    n, size = len(images), cfg.canvas
    scene = max(size, cfg.digit_size)  # the sensor sees the centre size x size of a scene x scene canvas
    pad = (scene - cfg.digit_size) // 2
    digits = torch.as_tensor(images, dtype=torch.float32)[:, None]  # [n, 1, h, w]
    canvas = torch.zeros(n, 1, scene, scene)
    canvas[..., pad:pad + cfg.digit_size, pad:pad + cfg.digit_size] = nnf.interpolate(
        digits, size=(cfg.digit_size,) * 2, mode="bilinear", align_corners=False)
    offset = (torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1) * cfg.offset_px
    shift = (_saccade(cfg)[:, None] + offset).float()  # [steps + 1, n, 2] displacement in px
    threshold = cfg.threshold + cfg.threshold_std * torch.randn(n, size * size, generator=g)
    threshold = threshold.clamp(min=cfg.threshold_min)  # [n, P], P = size * size pixels
    identity = nnf.affine_grid(torch.eye(2, 3)[None], [1, 1, size, size], align_corners=False)  # [1, H, W, 2]

    def log_intensity(k: int) -> Tensor:  # [n, P] at step k
        grid = identity * (size / scene) - (2.0 * shift[k] / scene)[:, None, None, :]  # output(p) = input(p - shift)
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



# ----------------------------------------------------------------------------------------------------
# bands-dvs: textures whose class information lives in one octave of spatial frequency (docs/argument.md).

BANDS: tuple[str, ...] = ("low", "mid", "high")  # octave k of BANDS[k]: 2^k to 2^(k+1) cycles per view


@dataclass(frozen=True)
class BandsDVSConfig:
    """Textures whose classes differ only in the octave ``band`` of spatial frequency, through the
    event camera of the offline default (``DigitsDVSConfig``'s saccade, thresholds and noise).

    A sample is a ``scene`` px texture of which the sensor sees the central ``view`` px. It is the sum
    of three octaves of band-pass noise, 1-2, 2-4 and 4-8 cycles per view (radial; the last lies above
    half Nyquist, where ``spectrum.high_frequency_share`` counts), each with the same RMS gradient
    (amplitude falling as 1/frequency, as in natural images), so that the three give events alike.
    Class c of ``classes`` is an orientation, ``c * 180 / classes`` degrees: in the octave ``band`` a
    share ``oriented_share`` of the variance is noise kept to the wedge of that orientation
    (``180 / classes`` degrees wide), the rest is isotropic noise; the two other octaves are isotropic.
    Every part is drawn afresh for every sample (random phase), so only the power spectrum in that
    octave tells the classes apart, wherever the texture lies. Intensity ``0.5 + contrast * texture``,
    clipped to [0, 1]. Nothing but ``band`` differs between ``bands-low``, ``bands-mid`` and ``bands-high``.
    """

    band: str = "mid"
    classes: int = 4
    train_per_class: int = 200
    test_per_class: int = 100
    view: int = 16
    scene: int = 24
    oriented_share: float = 0.5
    contrast: float = 0.15

    def sensor(self) -> DigitsDVSConfig:
        """The simulated event camera: the offline default's, looking at the centre of the scene."""
        return DigitsDVSConfig(canvas=self.view, digit_size=self.scene)


def cycles_per_view(size: int, view: int) -> tuple[Tensor, Tensor]:
    """Radial frequency (cycles per ``view`` px) and orientation (radians in [0, pi)) of every bin of
    an unshifted ``size x size`` FFT."""
    f = torch.fft.fftfreq(size, dtype=torch.float64) * view
    fy, fx = f[:, None].expand(size, size), f[None, :].expand(size, size)
    return torch.sqrt(fx ** 2 + fy ** 2), torch.atan2(fy, fx) % math.pi


def band_noise(n: int, size: int, keep: Tensor, g: torch.Generator) -> Tensor:
    """``n`` fields ``[n, size, size]`` of white noise kept to the FFT bins ``keep``, each of unit RMS."""
    white = torch.randn(n, size, size, generator=g, dtype=torch.float64)
    field = torch.fft.ifft2(torch.fft.fft2(white) * keep).real
    return field / field.pow(2).mean((1, 2), keepdim=True).sqrt()


def band_textures(cfg: BandsDVSConfig, labels: np.ndarray, seed: int) -> np.ndarray:
    """Intensity images ``[N, scene, scene]`` in [0, 1] of the classes ``labels`` (see ``BandsDVSConfig``)."""
    if cfg.band not in BANDS:
        raise ValueError(f"band must be one of {BANDS}, got {cfg.band!r}")
    g = torch.Generator().manual_seed(seed)
    radial, angle = cycles_per_view(cfg.scene, cfg.view)
    octaves = [(radial >= 2 ** k) & (radial < 2 ** (k + 1)) for k in range(len(BANDS))]
    gains = torch.tensor([2.0 ** -k for k in range(len(BANDS))], dtype=torch.float64)
    gains = gains / gains.norm()  # equal RMS gradient per octave, unit RMS in all
    labels = torch.as_tensor(labels)
    texture = torch.zeros(len(labels), cfg.scene, cfg.scene, dtype=torch.float64)
    for k, (octave, gain) in enumerate(zip(octaves, gains)):
        part = band_noise(len(labels), cfg.scene, octave, g)
        if BANDS[k] == cfg.band:
            width = math.pi / cfg.classes
            oriented = torch.zeros_like(part)
            for c in range(cfg.classes):
                off = (angle - c * width + width / 2) % math.pi  # in [0, width): the wedge around c * width
                chosen = labels == c
                if chosen.any():
                    oriented[chosen] = band_noise(int(chosen.sum()), cfg.scene, octave & (off < width), g)
            part = (1 - cfg.oriented_share) ** 0.5 * part + cfg.oriented_share ** 0.5 * oriented
        texture += gain * part
    return (0.5 + cfg.contrast * texture).clamp(0, 1).numpy()
