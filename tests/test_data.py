"""Dataset loaders on tiny files in each dataset's real on-disk format, frame integration
(docs/reference/datasets.md, frame integration), the frame cache, the offline digits-dvs default,
the data-folder checks and every named error. Augmentation itself: tests/test_augment.py."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import augment
import data
import events as ev_module
import fake_datasets as fk
from augment import EventAugment
from data import DatasetNotFoundError, build_datasets, integrate_frames
from events import make_events


def events(n, **kw):
    ev = fk.regular_events(n, **kw)
    return make_events(ev["t"], ev["x"], ev["y"], ev["p"])


@pytest.fixture
def count_integrations(monkeypatch):
    calls = []
    original = ev_module.integrate_frames

    def counting(*args, **kwargs):
        calls.append(args[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(ev_module, "integrate_frames", counting)
    return calls


# ---------------------------------------------------------------------------------------------- frames


@pytest.mark.parametrize("n, T, expected", [(7, 3, [2, 2, 3]), (2, 4, [0, 0, 0, 2]), (0, 2, [0, 0]),
                                            (16, 4, [4, 4, 4, 4]), (9, 1, [9])])
def test_integrate_splits_by_event_count_remainder_last(n, T, expected):
    frames = integrate_frames(events(n), T, 128, 128)
    assert frames.shape == (T, 2, 128, 128) and frames.dtype == np.float32
    assert frames.sum(axis=(1, 2, 3)).tolist() == expected


def test_integrate_coordinates_channels_and_counts():
    ev = make_events(np.arange(5), [5, 5, 5, 0, 3], [2, 2, 2, 7, 1], [0, 0, 0, 1, 1])
    ev["p"][4] = 2  # any non-zero polarity counts as channel 1
    frames = integrate_frames(ev, 1, 8, 6)  # H=8, W=6: x indexes columns, y rows
    assert frames[0, 0, 2, 5] == 3  # counts are not clipped
    assert frames[0, 1, 7, 0] == 1 and frames[0, 1, 1, 3] == 1
    assert frames.sum() == 5


def test_integrate_rejects_events_outside_sensor():
    with pytest.raises(ValueError, match="outside the 8x8 sensor"):
        integrate_frames(make_events([0], [8], [0], [0]), 2, 8, 8)


# ---------------------------------------------------------------------------------------------- readers


def test_aedat31_reader_overflow_packets_and_special_events(tmp_path):
    ev = fk.regular_events(9)
    ev["t"][5:] += 3 << 31  # later packets carry a timestamp overflow
    fk.write_aedat31(tmp_path / "a.aedat", ev, packet_size=2)
    got = data.read_aedat31(tmp_path / "a.aedat")
    assert got["t"].tolist() == ev["t"].tolist()  # the type-0 packet is skipped
    assert got["x"].tolist() == ev["x"].tolist() and got["y"].tolist() == ev["y"].tolist()
    assert got["p"].tolist() == ev["p"].tolist()


def test_aedat31_reader_rejects_lf_header_and_truncation(tmp_path):
    fk.write_aedat31(tmp_path / "a.aedat", fk.regular_events(4))
    raw = (tmp_path / "a.aedat").read_bytes()
    (tmp_path / "lf.aedat").write_bytes(raw.replace(b"\r\n", b"\n"))
    with pytest.raises(ValueError, match="lf.aedat: not an AEDAT 3.x file"):
        data.read_aedat31(tmp_path / "lf.aedat")
    (tmp_path / "cut.aedat").write_bytes(raw[:-3])
    with pytest.raises(ValueError, match="truncated"):
        data.read_aedat31(tmp_path / "cut.aedat")


def test_aedat2_reader_swaps_and_flips_like_spikingjelly(tmp_path):
    fk.write_aedat20(tmp_path / "c.aedat", [3, 0], [5, 127], [1, 0], [10, 20])
    got = data.read_aedat2_cifar10dvs(tmp_path / "c.aedat")
    assert got[["t", "x", "y", "p"]].tolist() == [(10, 122, 124, 0), (20, 0, 127, 1)]
    assert integrate_frames(got[:1], 1, 128, 128)[0, 0, 124, 122] == 1
    (tmp_path / "bad.aedat").write_bytes(b"\x00\x01binary without header")
    with pytest.raises(ValueError, match="bad.aedat: not an AEDAT 2.0 file"):
        data.read_aedat2_cifar10dvs(tmp_path / "bad.aedat")


def test_aedat4_reader_through_tonic(tmp_path):
    fk.write_aedat4(tmp_path / "e.aedat4", [1, 2, 3], [3, 4, 5], [6, 7, 8], [0, 1, 1])
    got = ev_module.read_aedat4(tmp_path / "e.aedat4")
    assert got[["t", "x", "y", "p"]].tolist() == [(1, 3, 6, 0), (2, 4, 7, 1), (3, 5, 8, 1)]


# ---------------------------------------------------------------------------------------------- DVS128 Gesture

GESTURE = {  # trial: (split, events, [(class, start, end)]); events every 10 us from t=1000
    "user01_fluorescent": ("train", fk.regular_events(300, t0=1000), [(1, 1000, 1500), (8, 1500, 2200),
                                                                      (8, 2200, 3000), (11, 3000, 4000)]),
    "user02_led": ("train", fk.regular_events(300, t0=1000), [(3, 1000, 2000), (2, 2000, 3990)]),
    "user24_lab": ("test", fk.regular_events(300, t0=1000), [(5, 1000, 1105), (11, 2000, 2500)]),
}


def frame_sums(dataset):
    return [int(dataset[i][0].sum()) for i in range(len(dataset))]


def test_gesture_original_split_windows_and_labels(tmp_path):
    fk.write_gesture_tree(tmp_path, GESTURE)
    train, test, info = build_datasets("dvsgesture", tmp_path, T=4, augment=False)
    assert info == data.DatasetInfo("dvsgesture", 11, 2, (128, 128), 4)
    assert len(train) == 6 and len(test) == 2
    assert train.targets == [0, 7, 7, 10, 2, 1] and test.targets == [4, 10]
    # start <= t < end: [1000, 1500) holds 50 events; 3990 itself is excluded; [1000, 1105) holds 11
    assert frame_sums(train) == [50, 70, 80, 100, 100, 199] and frame_sums(test) == [11, 50]
    x, label = test[0]
    assert x.shape == (4, 2, 128, 128) and x.dtype == torch.float32 and label == 4
    assert x.sum(dim=(1, 2, 3)).tolist() == [2, 2, 2, 5]
    assert x[0, 0, 0, 0] == 1 and x[0, 1, 7, 1] == 1  # events 0 (x=0, y=0, p=0) and 1 (x=1, y=7, p=1)


def test_gesture_spikingjelly_label_order(tmp_path):
    fk.write_gesture_tree(tmp_path, GESTURE)
    train, test, _ = build_datasets("dvsgesture", tmp_path, T=2, label_order="spikingjelly")
    assert train.targets == [0, 8, 8, 2, 3, 1] and test.targets == [5, 2]
    with pytest.raises(ValueError, match="label_order"):
        build_datasets("dvsgesture", tmp_path, T=2, label_order="sorted")


def test_gesture_tonic_layout(tmp_path):
    rows = np.array([[1, 2, 0, 5], [3, 4, 1, 6], [5, 6, 1, 7]])  # x, y, p, t in ms
    fk.write_tonic_gesture_tree(tmp_path, {"train": {"user01_led": {3: rows, 10: rows[:2]}},
                                           "test": {"user24_lab": {0: rows[:1]}}})
    assert ev_module.read_tonic_gesture_npy(tmp_path / "DVSGesture/ibmGestureTrain/user01_led/3.npy")["t"].tolist() \
        == [5000, 6000, 7000]
    train, test, info = build_datasets("dvsgesture", tmp_path, T=1, augment=False)
    assert train.targets == [10, 3] and test.targets == [0]  # sorted file names: '10.npy' < '3.npy'
    assert frame_sums(train) == [2, 3] and test[0][0][0, 0, 2, 1] == 1


def test_gesture_missing_and_incomplete(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        build_datasets("dvsgesture", tmp_path)
    message = str(err.value)
    assert "trials_to_train.txt" in message and "--data-dir" in message and "--download" in message
    assert "research.ibm.com" in message and str(tmp_path / "DvsGesture") in message
    folder = fk.write_gesture_tree(tmp_path, GESTURE)
    (folder / "user02_led.aedat").unlink()
    with pytest.raises(DatasetNotFoundError, match="missing: .*user02_led.aedat"):
        build_datasets("dvsgesture", tmp_path)
    assert isinstance(err.value, FileNotFoundError)


def test_gesture_download_uses_tonic_copy(tmp_path, monkeypatch):
    import tonic

    class FakeTonicGesture:  # stands in for tonic's downloader: writes its layout, no network
        def __init__(self, save_to, train):
            split = "train" if train else "test"
            fk.write_tonic_gesture_tree(save_to, {split: {"user05_led": {1: np.array([[1, 1, 1, 1]])}}})

    monkeypatch.setattr(tonic.datasets, "DVSGesture", FakeTonicGesture)
    train, test, _ = build_datasets("dvsgesture", tmp_path, T=1, download=True)
    assert len(train) == 1 and len(test) == 1 and train.targets == [1]


# ---------------------------------------------------------------------------------------------- CIFAR10-DVS


def test_cifar10dvs_originals_lexicographic_90_10_split(tmp_path):
    fk.write_cifar10dvs_tree(tmp_path / "CIFAR10DVS", per_class=11)  # files 0..10, file i has i+1 events
    train, test, info = build_datasets("cifar10dvs", tmp_path, T=2, augment=False)
    assert info == data.DatasetInfo("cifar10dvs", 10, 2, (128, 128), 2)
    assert len(train) == 100 and len(test) == 10  # ceil(0.9 * 11) = 10 per class
    # string order 0, 1, 10, 2, ..., 9: the test file is index 9 (10 events), not index 10
    assert frame_sums(test) == [10] * 10 and test.targets == list(range(10))
    assert frame_sums(train)[:10] == [1, 2, 11, 3, 4, 5, 6, 7, 8, 9] and train.targets[::10] == list(range(10))
    x, _ = test[0]
    assert x.shape == (2, 2, 128, 128)
    assert x[0, 1, 127, 127] == 1  # raw (0, 0, p=0) -> (x=127, y=127, p=1)


def test_split_90_10_rule():
    files = [Path(f"cifar10_cat_{i}.aedat") for i in range(1000)]
    train, test = data.split_90_10(files)
    assert len(train) == 900 and len(test) == 100
    indices = sorted(int(f.stem.rsplit("_", 1)[1]) for f in test)
    assert indices == list(range(91, 100)) + list(range(909, 1000))
    assert [len(part) for part in data.split_90_10(files[:15])] == [14, 1]  # ceil(13.5) = 14


def test_cifar10dvs_tonic_aedat4_layout(tmp_path):
    fk.write_cifar10dvs_tree(tmp_path / "CIFAR10DVS", per_class=2, fmt="aedat4")
    train, test, _ = build_datasets("cifar10dvs", tmp_path, T=1, augment=False)
    assert len(train) == 20 and len(test) == 0  # ceil(0.9 * 2) = 2
    assert frame_sums(train)[:2] == [1, 2] and train[1][0][0, 1, 7, 1] == 1  # stored coordinates kept


def test_cifar10dvs_missing_and_incomplete(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"(?s)airplane.*figshare.*--data-dir.*--download"):
        build_datasets("cifar10dvs", tmp_path)
    fk.write_cifar10dvs_tree(tmp_path, per_class=1, classes=fk.CIFAR10DVS_CLASSES[:9])
    with pytest.raises(DatasetNotFoundError, match="no files for: truck"):
        build_datasets("cifar10dvs", tmp_path)


# ---------------------------------------------------------------------------------------------- cache


def test_cache_reused_and_invalidated(tmp_path, count_integrations):
    folder = fk.write_gesture_tree(tmp_path / "raw", GESTURE)
    build_datasets("dvsgesture", tmp_path / "raw", T=4, cache_dir=tmp_path / "cache")
    assert count_integrations == [4] * 8
    build_datasets("dvsgesture", tmp_path / "raw", T=4, cache_dir=tmp_path / "cache")
    assert len(count_integrations) == 8  # second build reads the cache
    build_datasets("dvsgesture", tmp_path / "raw", T=2, cache_dir=tmp_path / "cache")
    assert count_integrations[8:] == [2] * 8  # T is part of the key
    csv = folder / "user24_lab_labels.csv"
    csv.write_text(csv.read_text().replace("2500", "2600"))
    _, test, _ = build_datasets("dvsgesture", tmp_path / "raw", T=2, cache_dir=tmp_path / "cache")
    assert len(count_integrations) == 18 and frame_sums(test) == [11, 60]  # only the changed split re-integrates
    assert len(list((tmp_path / "cache" / "dvsgesture").iterdir())) == 5


def test_cache_default_location_under_data_dir(tmp_path):
    fk.write_gesture_tree(tmp_path, GESTURE)
    build_datasets("dvsgesture", tmp_path, T=3)
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "cache" / "dvsgesture").iterdir()) == ["test", "train"]


def cache_files(cache, split):
    folder, = (cache / "dvsgesture").glob(f"{split}-*")
    return sorted(folder.glob("*.npz"))


@pytest.mark.parametrize("damage", ["garbage", "empty-archive", "nan", "inf"])
def test_bad_cache_file_named_with_the_command_that_rebuilds_it(tmp_path, count_integrations, damage):
    """A corrupt or non-finite cache file is a DataFileError naming it and the rm that rebuilds it;
    after the rm the next build integrates that one file again and the sample is back."""
    fk.write_gesture_tree(tmp_path, GESTURE)
    _, test, _ = build_datasets("dvsgesture", tmp_path, T=2)
    good = test[1][0].clone()
    file = cache_files(tmp_path / "cache", "test")[1]
    if damage == "garbage":
        file.write_bytes(b"PK\x03\x04 not really a zip")
    elif damage == "empty-archive":
        ev_module.save_npz(file, compressed=True, other=np.zeros(3))
    else:
        frames = good.numpy().copy()
        frames[0, 0, 0, 0] = np.nan if damage == "nan" else np.inf
        ev_module.save_npz(file, compressed=True, frames=frames)
    with pytest.raises(data.DataFileError, match=f"{file}: .*rm '{file}'") as err:
        test[1]
    assert ("non-finite" in str(err.value)) == (damage in ("nan", "inf"))
    assert test[0][0].shape == (2, 2, 128, 128)  # the other files still load
    file.unlink()
    calls = len(count_integrations)
    _, test, _ = build_datasets("dvsgesture", tmp_path, T=2)
    assert len(count_integrations) == calls + 1 and torch.equal(test[1][0], good)


def test_bad_labels_csv_names_the_file(tmp_path):
    folder = fk.write_gesture_tree(tmp_path, GESTURE)
    csv = folder / "user02_led_labels.csv"
    for rows in ("3,1000,2000\nthree,2000,3990\n", "12,1000,2000\n", "3,2000,1000\n", "3,1000\n"):
        csv.write_text("class,startTime_usec,endTime_usec\n" + rows)
        with pytest.raises(data.DataFileError, match=f"{csv}: expected .*class 1..11 and start < end"):
            build_datasets("dvsgesture", tmp_path, T=2)


def test_out_of_range_events_and_bad_event_files_name_the_file(tmp_path):
    trial = fk.regular_events(20, t0=1000)
    trial["x"][5] = 200  # AEDAT 3.1 stores 15-bit x; the DVS128 sensor has 128 columns
    folder = fk.write_gesture_tree(tmp_path / "gesture", {"user01_led": ("train", trial, [(1, 1000, 1200)]),
                                                          "user24_led": ("test", trial, [(2, 1000, 1040)])})
    with pytest.raises(data.DataFileError, match=f"{folder / 'user01_led.aedat'}: sample user01_led_0_0: "
                                                 r"event coordinates x in \[0, 200\].*outside the 128x128"):
        build_datasets("dvsgesture", tmp_path / "gesture", T=2)
    raw = bytearray((folder / "user24_led.aedat").read_bytes())
    end = raw.find(b"#!END-HEADER\r\n") + 14
    raw[end + 20:end + 24] = (-5).to_bytes(4, "little", signed=True)  # capacity of the first packet
    (folder / "user24_led.aedat").write_bytes(bytes(raw))
    with pytest.raises(data.DataFileError, match="user24_led.aedat: corrupt AEDAT 3.1 packet header"):
        data.read_aedat31(folder / "user24_led.aedat")
    (tmp_path / "x.aedat4").write_bytes(b"#!AER-DAT4.0\r\n" + b"\x01" * 50)
    with pytest.raises(data.DataFileError, match="x.aedat4: not a readable AEDAT 4.0 file"):
        ev_module.read_aedat4(tmp_path / "x.aedat4")
    (tmp_path / "x.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(data.DataFileError, match="x.npy: not a readable .npy event array"):
        ev_module.read_tonic_gesture_npy(tmp_path / "x.npy")
    fk.write_tonic_gesture_tree(tmp_path / "tonic", {"train": {"user01_led": {11: np.array([[1, 1, 1, 1]])}},
                                                     "test": {"user24_lab": {0: np.array([[1, 1, 1, 1]])}}})
    with pytest.raises(data.DataFileError, match="11.npy: tonic's Gesture files are named <label>.npy with label 0..10"):
        build_datasets("dvsgesture", tmp_path / "tonic", T=1)


def test_missing_data_dir_is_an_error_before_anything_is_created(tmp_path, monkeypatch):
    """A dataset read from disk needs an existing --data-dir; digits-dvs (generated) may create the
    default ./data, but a named folder must exist (seen: --data-dir /nonexistent created folders at
    the filesystem root). Nothing is created on the way to an error."""
    missing = tmp_path / "nonexistent"
    for name in ("dvsgesture", "cifar10dvs", "cifar10", "imagenet"):
        with pytest.raises(DatasetNotFoundError, match=f"(?s){name}: dataset not.*--data-dir {missing} does not exist"):
            build_datasets(name, missing)
    for named in (missing, tmp_path / "a" / "b"):
        with pytest.raises(data.DataDirError, match=f"--data-dir {named} does not exist; create it"):
            build_datasets("digits-dvs", named)
    with pytest.raises(data.DataDirError, match="nor does its parent"):
        data.check_data_dir(tmp_path / "a" / "b", "dvsgesture", download=True)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    assert data.check_data_dir(None, "digits-dvs") == Path(data.DEFAULT_DATA_DIR)
    assert list((tmp_path / "cwd").iterdir()) == []
    assert data.check_data_dir(missing, "dvsgesture", download=True) == missing
    (tmp_path / "file").write_text("")
    with pytest.raises(data.DataDirError, match="is not a folder"):
        data.check_data_dir(tmp_path / "file", "cifar10")
    with pytest.raises(data.DataDirError, match=f"--cache-dir .* cannot be created: {tmp_path / 'file'} is not a folder"):
        data.check_data_dir(tmp_path, "dvsgesture", cache_dir=tmp_path / "file" / "cache" / "frames")


def test_read_only_data_dir(tmp_path, monkeypatch):
    """Event data caches its frames under --data-dir unless --cache-dir points elsewhere; images do not
    write, so a read-only folder serves them."""
    real_access = data.os.access
    monkeypatch.setattr(data.os, "access", lambda p, mode: Path(p) != tmp_path and real_access(p, mode))
    with pytest.raises(data.DataDirError, match=f"the frame cache {tmp_path / 'cache'} cannot be created: "
                                                f"{tmp_path} is not writable; pass a writable --cache-dir"):
        data.check_data_dir(tmp_path, "dvsgesture")
    assert data.check_data_dir(tmp_path, "dvsgesture", writes_cache=False) == tmp_path
    (tmp_path / "cache").mkdir()  # a writable cache inside a read-only folder serves
    assert data.check_data_dir(tmp_path, "dvsgesture") == tmp_path
    assert data.check_data_dir(tmp_path, "cifar10") == tmp_path
    assert data.check_data_dir(tmp_path, "dvsgesture", cache_dir=tmp_path.parent / "cache") == tmp_path
    with pytest.raises(data.DataDirError, match=f"--data-dir {tmp_path} is not writable \\(the download goes there\\)"):
        data.check_data_dir(tmp_path, "cifar10", download=True)


def test_seeded_subset_is_a_seeded_permutation_prefix():
    """The first n of torch.randperm under Generator().manual_seed(seed) (spectrum.py's choice and, for
    seed 0, train.py's --limit-train/--limit-test)."""
    dataset = list(range(50))
    for seed in (0, 7):
        sub = data.seeded_subset(dataset, 10, seed)
        assert sub.indices == torch.randperm(50, generator=torch.Generator().manual_seed(seed))[:10].tolist()
        assert [sub[i] for i in range(10)] == sub.indices
    assert data.seeded_subset(dataset, 10, 0).indices != data.seeded_subset(dataset, 10, 1).indices
    assert sorted(data.seeded_subset(dataset, 80, 0).indices) == dataset
    with pytest.raises(ValueError, match="at least one sample"):
        data.seeded_subset(dataset, 0, 0)


# ---------------------------------------------------------------------------------------------- augmentation


def test_train_set_augmented_test_set_not(tmp_path):
    fk.write_gesture_tree(tmp_path, GESTURE)
    train, test, _ = build_datasets("dvsgesture", tmp_path, T=2)
    assert isinstance(train.transform, EventAugment) and test.transform is None
    train, _, _ = build_datasets("dvsgesture", tmp_path, T=2, augment=False)
    assert train.transform is None


# ---------------------------------------------------------------------------------------------- digits-dvs


SHORT_SACCADE = ev_module.DigitsDVSConfig(steps=30)  # the default pipeline with a tenth of the simulation work


@pytest.fixture(scope="module")
def short_digits_dir(tmp_path_factory):
    """digits-dvs built with a short saccade (not conftest's default-settings `digits_dir`)."""
    root = tmp_path_factory.mktemp("digits")
    build_datasets("digits-dvs", root, digits_config=SHORT_SACCADE)
    return root


def test_digits_default_counts_shapes_and_cache(short_digits_dir, count_integrations):
    train, test, info = build_datasets("digits-dvs", short_digits_dir, digits_config=SHORT_SACCADE)
    assert count_integrations == []  # frames come from the cache built by the fixture
    assert info == data.DatasetInfo("digits-dvs", 10, 2, (24, 24), 4)
    assert (len(train), len(test)) == (1437, 360)
    per_class = np.bincount(np.concatenate([train.targets, test.targets]))
    assert np.all(np.abs(np.bincount(test.targets) - 0.2 * per_class) <= 1)  # stratified
    x, label = train[0]
    assert x.shape == (4, 2, 24, 24) and x.dtype == torch.float32 and 0 <= label < 10
    assert isinstance(train.transform, EventAugment) and test.transform is None
    events_file, = (short_digits_dir / "cache" / "digits-dvs").glob("events-*.npz")
    with np.load(events_file) as z:
        per_digit = np.diff(z["offsets"])
        assert z["labels"].tolist()[:3] == [0, 1, 2]
    assert len(per_digit) == 1797 and per_digit.min() > 50
    x, _ = test[0]
    n = int(x.sum())
    assert x.sum(dim=(1, 2, 3)).tolist() == [n // 4] * 3 + [n - 3 * (n // 4)]


def test_corrupt_digit_events_named(short_digits_dir, tmp_path):
    """A damaged simulated-events file is a DataFileError naming it and the rm that re-simulates it."""
    events_file, = (short_digits_dir / "cache" / "digits-dvs").glob("events-*.npz")
    (tmp_path / "digits-dvs").mkdir()
    damaged = tmp_path / "digits-dvs" / events_file.name
    damaged.write_bytes(events_file.read_bytes()[:1000])
    with pytest.raises(data.DataFileError, match=f"{damaged}: corrupt simulated digit events.*rm '{damaged}'"):
        build_datasets("digits-dvs", short_digits_dir, cache_dir=tmp_path, digits_config=SHORT_SACCADE)


def test_digits_T_override(short_digits_dir):
    train, test, info = build_datasets("digits-dvs", short_digits_dir, T=2, augment=False, digits_config=SHORT_SACCADE)
    assert info.T == 2 and train[0][0].shape == (2, 2, 24, 24)


def test_digit_simulation_deterministic_and_plausible():
    from sklearn.datasets import load_digits

    images = load_digits().images[:12] / 16.0
    cfg = ev_module.DigitsDVSConfig(steps=60)
    (a, off_a), (b, off_b) = (ev_module.simulate_digit_events(images, cfg, seed=3) for _ in range(2))
    assert np.array_equal(a, b) and np.array_equal(off_a, off_b)
    c, _ = ev_module.simulate_digit_events(images, cfg, seed=4)
    assert not np.array_equal(a, c)
    assert off_a[0] == 0 and off_a[-1] == len(a) and np.all(np.diff(off_a) > 100)
    for i in range(12):
        t = a["t"][off_a[i]:off_a[i + 1]]
        assert np.all(np.diff(t) >= 0) and t.min() >= 0 and t.max() < 60 * cfg.step_us
    assert a["x"].max() < 24 and a["y"].max() < 24 and 0.3 < a["p"].mean() < 0.7


def test_default_simulation_events_per_digit():
    from sklearn.datasets import load_digits

    _, offsets = ev_module.simulate_digit_events(load_digits().images[:100] / 16.0, seed=0)
    per_digit = np.diff(offsets)  # docs/reference/offline_default.md: about 2,400 events per digit
    assert 1000 < per_digit.min() and per_digit.max() < 5000 and 2000 < per_digit.mean() < 2800


# ---------------------------------------------------------------------------------------------- static images


def test_cifar_missing_names_folder_and_download(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"(?s)cifar-10-batches-py.*--data-dir.*--download"):
        build_datasets("cifar10", tmp_path)
    with pytest.raises(DatasetNotFoundError, match="cifar-100-python"):
        build_datasets("cifar100", tmp_path)


def test_cifar_transforms_shapes():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    torch.manual_seed(0)
    for train in (True, False):
        x = augment.cifar_transforms(train)(image)
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    plain = augment.cifar_transforms(False)(image)
    mean, std = augment.NORMALIZATION["cifar10"]
    expected = (torch.from_numpy(np.array(image)).permute(2, 0, 1) / 255 - torch.tensor(mean)[:, None, None]) \
        / torch.tensor(std)[:, None, None]
    assert torch.allclose(plain, expected, atol=1e-6)


def write_image_folder(root, classes, n=2):
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (40, 30), (10 * i, 100, 200)).save(root / c / f"{c}_{i}.JPEG")


def test_imagenet_image_folder(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"(?s)train/<wnid>.*image-net.org.*--data-dir.*cannot fetch"):
        build_datasets("imagenet", tmp_path)
    write_image_folder(tmp_path / "train", ["n01", "n02"])
    write_image_folder(tmp_path / "val", ["n01", "n02"], n=1)
    train, val, info = build_datasets("imagenet", tmp_path)
    assert info == data.DatasetInfo("imagenet", 2, 3, (224, 224), None)
    assert (len(train), len(val)) == (4, 2)
    for dataset in (train, val):
        x, label = dataset[1]
        assert x.shape == (3, 224, 224) and label == (1 if dataset is val else 0)


def test_imagenet_flat_val_folder(tmp_path):
    write_image_folder(tmp_path / "train", ["n01", "n02"])
    write_image_folder(tmp_path / "val", ["ILSVRC2012_val"], n=1)
    with pytest.raises(DatasetNotFoundError, match="val/ has 1 different"):
        build_datasets("imagenet", tmp_path)


def test_bad_names_and_T(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'mnist'; choose one of digits-dvs"):
        build_datasets("mnist")
    with pytest.raises(ValueError, match="T must be a positive"):
        build_datasets("dvsgesture", tmp_path, T=0)

