"""Tiny event-dataset files in the real on-disk formats (facts: docs/reference/datasets.md), for tests.

Writers: AEDAT 3.1 (DVS128 Gesture originals), AEDAT 2.0 (CIFAR10-DVS originals), AEDAT 4.0 (tonic's
CIFAR10-DVS copy) and tonic's Gesture npy layout, plus whole trees for ``data.build_datasets``.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

CIFAR10DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def regular_events(n: int, t0: int = 0, dt: int = 10, size: int = 128) -> dict[str, np.ndarray]:
    """n events every dt us from t0 at distinct-looking pixels: x = i % size, y = 7i % size, p = i % 2."""
    i = np.arange(n)
    return {"t": t0 + dt * i, "x": i % size, "y": (7 * i) % size, "p": i % 2}


def write_aedat31(path: Path, ev: dict[str, np.ndarray], packet_size: int = 64, special_packet: bool = True) -> None:
    """AEDAT 3.1: CRLF header, then 28-byte packet headers + 8-byte polarity events (little-endian).

    Events are grouped into packets of at most ``packet_size`` sharing one timestamp overflow
    (t >> 31). ``special_packet`` puts a one-event packet of type 0 first, which readers must skip.
    """
    header = (b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n"
              b"#Start-Time: 2017-01-01 12:00:00 (TZ+0000)\r\n#!END-HEADER\r\n")
    t = np.asarray(ev["t"], dtype=np.int64)
    data = (np.asarray(ev["x"], np.uint32) << 17) | (np.asarray(ev["y"], np.uint32) << 2) \
        | (np.asarray(ev["p"], np.uint32) << 1) | 1
    body = bytearray()
    if special_packet:
        body += struct.pack("<hhiiiiii", 0, 1, 8, 4, 0, 1, 1, 1) + struct.pack("<Ii", 0xFFFF, 0)
    start = 0
    while start < len(t):
        overflow = t[start] >> 31
        stop = start
        while stop < len(t) and stop - start < packet_size and t[stop] >> 31 == overflow:
            stop += 1
        n = stop - start
        body += struct.pack("<hhiiiiii", 1, 1, 8, 4, int(overflow), n, n, n)
        events = np.empty(n, np.dtype([("data", "<u4"), ("ts", "<i4")]))
        events["data"], events["ts"] = data[start:stop], t[start:stop] & 0x7FFFFFFF
        body += events.tobytes()
        start = stop
    Path(path).write_bytes(header + bytes(body))


def write_gesture_tree(root: Path, trials: dict[str, tuple[str, dict, list[tuple[int, int, int]]]]) -> Path:
    """IBM DvsGesture tree under ``root/DvsGesture``; ``trials[name] = (split, events, [(class, start, end)])``."""
    folder = Path(root) / "DvsGesture"
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        names = [f"{name}.aedat" for name, (s, _, _) in trials.items() if s == split]
        (folder / f"trials_to_{split}.txt").write_text("\n".join(names) + "\n\n")
    for name, (_, ev, rows) in trials.items():
        write_aedat31(folder / f"{name}.aedat", ev)
        lines = ["class,startTime_usec,endTime_usec"] + [f"{c},{a},{b}" for c, a, b in rows]
        (folder / f"{name}_labels.csv").write_text("\n".join(lines) + "\n")
    return folder


def write_tonic_gesture_tree(root: Path, samples: dict[str, dict[str, dict[int, np.ndarray]]]) -> Path:
    """tonic's copy: ``root/DVSGesture/ibmGesture{Train,Test}/<trial>/<label>.npy`` holding N x 4 (x, y, p, t_ms).

    ``samples[split][trial][label] = array``, split in {"train", "test"}.
    """
    base = Path(root) / "DVSGesture"
    for split, trials in samples.items():
        for trial, per_label in trials.items():
            folder = base / ("ibmGestureTrain" if split == "train" else "ibmGestureTest") / trial
            folder.mkdir(parents=True, exist_ok=True)
            for label, array in per_label.items():
                np.save(folder / f"{label}.npy", array)
    return base


def cifar_address(raw_x: np.ndarray, raw_y: np.ndarray, raw_p: np.ndarray) -> np.ndarray:
    """DVS128 jAER address: polarity bit 0, x bits 1-7, y bits 8-14."""
    return (np.asarray(raw_y, np.uint32) << 8) | (np.asarray(raw_x, np.uint32) << 1) | np.asarray(raw_p, np.uint32)


def write_aedat20(path: Path, raw_x, raw_y, raw_p, t) -> None:
    """AEDAT 2.0 (jAER): '#' header lines, then big-endian uint32 (address, timestamp) pairs."""
    header = (b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
              b"# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event\r\n"
              b"# Timestamps tick is 1 us\r\n# AEChip: ch.unizh.ini.jaer.chip.retina.DVS128\r\n")
    body = np.empty(len(t), np.dtype([("a", ">u4"), ("t", ">u4")]))
    body["a"], body["t"] = cifar_address(raw_x, raw_y, raw_p), t
    Path(path).write_bytes(header + body.tobytes())


def _aedat4_ioheader(xml: bytes) -> bytes:
    text = struct.pack("<I", len(xml)) + xml + b"\0"
    text += b"\0" * (-len(text) % 4)
    return (struct.pack("<I", 24) + b"IOHE" + struct.pack("<5H", 10, 20, 4, 8, 16) + b"\0" * 6
            + struct.pack("<iiqI", 16, 0, -1, 4) + text)


def _aedat4_packet(t, x, y, on) -> bytes:
    events = np.zeros(len(t), np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("on", "u1"), ("pad", "V3")]))
    events["t"], events["x"], events["y"], events["on"] = t, x, y, on
    body = (struct.pack("<I", 16) + b"EVTS" + struct.pack("<3H", 6, 8, 4) + b"\0\0"
            + struct.pack("<iII", 8, 4, len(t)) + events.tobytes())
    return struct.pack("<I", len(body)) + body


def write_aedat4(path: Path, t, x, y, on, width: int = 128, height: int = 128) -> None:
    """AEDAT 4.0, uncompressed, one event packet on stream 0 (layout: docs/reference/datasets.md, AEDAT 4.0)."""
    xml = (f'<dv version="2.0"><node name="outInfo" path="/outInfo/"><node name="0" path="/outInfo/0/">'
           f'<attr key="typeIdentifier" type="string">EVTS</attr><node name="info" path="/outInfo/0/info/">'
           f'<attr key="sizeX" type="int">{width}</attr><attr key="sizeY" type="int">{height}</attr>'
           f'</node></node></node></dv>').encode()
    header = _aedat4_ioheader(xml)
    packet = _aedat4_packet(t, x, y, on)
    Path(path).write_bytes(b"#!AER-DAT4.0\r\n" + struct.pack("<I", len(header)) + header
                           + struct.pack("<II", 0, len(packet)) + packet)


def write_cifar10dvs_tree(root: Path, per_class: int, fmt: str = "aedat", classes=CIFAR10DVS_CLASSES) -> Path:
    """Per-class folders ``root/<class>/cifar10_<class>_<i>.<fmt>``; file i holds i+1 events, so a
    sample's event count (its frame sum) tells which file it came from. fmt: 'aedat' (2.0) or 'aedat4'.
    """
    root = Path(root)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            ev = regular_events(i + 1)
            path = root / c / f"cifar10_{c}_{i}.{fmt}"
            if fmt == "aedat":
                write_aedat20(path, ev["x"], ev["y"], ev["p"], ev["t"])
            else:
                write_aedat4(path, ev["t"], ev["x"], ev["y"], ev["p"])
    return root
