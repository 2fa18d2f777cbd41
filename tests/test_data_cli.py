"""``python show_events.py``: the inspection command behind docs/events.md's frame picture."""
import numpy as np
import pytest

import data
import show_events
from fake_datasets import regular_events, write_gesture_tree


@pytest.fixture()
def gesture_dir(tmp_path):
    """A fake IBM tree: one train trial with two gestures (7 and 5 events), one test trial."""
    ev = regular_events(40, t0=0, dt=10)
    write_gesture_tree(tmp_path, {"user01_led": ("train", ev, [(3, 0, 70), (1, 100, 150)]),
                                  "user24_led": ("test", ev, [(2, 0, 100)])})
    return tmp_path


def test_show_writes_png_and_prints_equal_count_frames(gesture_dir, capsys):
    """Measure: the printed per-frame event counts and the PNG. Threshold: samples ordered by label
    (class 1 -> label 0 first), frames of N // T events with the remainder in the last ([2, 2, 3] for
    7 events, T = 3), and a non-empty PNG file."""
    out = gesture_dir / "figs" / "show.png"
    show_events.main(["dvsgesture", "--data-dir", str(gesture_dir), "--out", str(out), "-T", "3"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("user01_led_0_0: label 0, 5 events") and lines[0].endswith("[1, 1, 3]")
    assert lines[1].startswith("user01_led_2_0: label 2, 7 events") and lines[1].endswith("[2, 2, 3]")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_index_and_errors(gesture_dir, tmp_path, capsys):
    show_events.main(["dvsgesture", "--data-dir", str(gesture_dir), "--split", "test", "--index", "0",
               "--out", str(tmp_path / "a.png")])
    assert capsys.readouterr().out.startswith("user24_led_1_0: label 1, 10 events")
    with pytest.raises(SystemExit):
        show_events.main(["dvsgesture", "--data-dir", str(gesture_dir), "--index", "5"])
    assert "--index [5] outside the train split's 0..1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        show_events.main(["cifar10dvs", "--data-dir", str(tmp_path / "empty")])
    assert exit_info.value.code == 2 and "cifar10dvs: dataset not found" in capsys.readouterr().err
    with pytest.raises(ValueError, match="'cifar10' is not an event dataset"):
        data.event_samples("cifar10")


def test_polarity_image_colours():
    """ON counts (channel 1) turn a pixel red, OFF counts (channel 0) blue, both dark, none white."""
    frame = np.zeros((2, 1, 4), np.float32)
    frame[1, 0, 0] = 2  # ON
    frame[0, 0, 1] = 2  # OFF
    frame[:, 0, 2] = 2  # both
    rgb = show_events.polarity_image(frame, scale=2.0)
    assert rgb[0].tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 0], [1, 1, 1]]


@pytest.mark.parametrize("problem", ["data-dir", "event-file", "out", "T"])
def test_bad_input_exits_2_with_one_message(gesture_dir, tmp_path, capsys, problem):
    """An unusable --data-dir, a bad event file, an --out that cannot be written and -T 0 each end with
    status 2 and a message naming the problem, never a traceback; nothing is created on the way."""
    args = ["dvsgesture", "--data-dir", str(gesture_dir), "--out", str(tmp_path / "figs" / "a.png")]
    expected = {"data-dir": "does not exist; create it", "event-file": "user01_led.aedat: not an AEDAT 3.x file",
                "out": "figs is not a folder", "T": "-T (0) and --samples (3) must be positive"}[problem]
    if problem == "data-dir":
        args = ["digits-dvs", "--data-dir", str(tmp_path / "a" / "b"), "--out", str(tmp_path / "a.png")]
    elif problem == "event-file":
        (gesture_dir / "DvsGesture" / "user01_led.aedat").write_bytes(b"not an event file")
    elif problem == "out":
        (tmp_path / "figs").write_text("a file where the output folder should be")
    else:
        args += ["-T", "0"]
    with pytest.raises(SystemExit) as exit_info:
        show_events.main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and expected in err and "Traceback" not in err
    assert not (tmp_path / "a").exists()
