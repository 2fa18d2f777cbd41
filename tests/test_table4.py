"""The frequency-band datasets (events.BandsDVSConfig, data.BAND_DATASETS) and the mini Table 4
(table4.py, docs/argument.md): where the class information lives, measured; the interval and
verdict arithmetic; the quick grid end to end through train.py."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

import data
import table4
from events import BANDS, BandsDVSConfig, DigitsDVSConfig, band_textures, cycles_per_view, simulate_digit_events


@pytest.fixture(scope="session")
def bands_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A data folder holding bands-low, bands-mid and bands-high, simulated once per session."""
    folder = tmp_path_factory.mktemp("bands-data")
    for name in data.BAND_DATASETS:
        data.build_datasets(name, data_dir=str(folder))
    return str(folder)


def octave_power_by_class(cfg: BandsDVSConfig, n_per_class: int = 100) -> np.ndarray:
    """``[octaves, classes, orientation sectors]``: mean image power per class, octave and 45-degree sector."""
    labels = np.arange(cfg.classes * n_per_class) % cfg.classes
    images = torch.as_tensor(band_textures(cfg, labels, seed=0))
    power = torch.fft.fft2(images - images.mean((1, 2), keepdim=True)).abs().pow(2)
    radial, angle = cycles_per_view(cfg.scene, cfg.view)
    sector = (angle / (math.pi / cfg.classes) + 0.5).long() % cfg.classes  # sector c: around c * 45 degrees
    out = np.zeros((len(BANDS), cfg.classes, cfg.classes))
    for k in range(len(BANDS)):
        for s in range(cfg.classes):
            keep = (radial >= 2 ** k) & (radial < 2 ** (k + 1)) & (sector == s)
            for c in range(cfg.classes):
                out[k, c, s] = power[torch.as_tensor(labels == c)][:, keep].sum(1).mean()
    return out


@pytest.mark.parametrize("band", BANDS)
def test_texture_classes_differ_only_in_their_octave(band):
    """In the intensity images, the class changes which orientation holds the power only in the
    chosen octave: there the class's own sector has about twice the power of the others (half of
    the octave's variance is oriented), elsewhere every class has the same, isotropic spectrum."""
    power = octave_power_by_class(BandsDVSConfig(band=band))
    for k, octave in enumerate(BANDS):
        own = np.diag(power[k]).mean()                                   # class c in sector c
        other = (power[k].sum() - np.trace(power[k])) / (power[k].size - len(power[k]))
        if octave == band:
            assert own / other > 2.5, (octave, own / other)
        else:
            assert abs(own / other - 1) < 0.15, (octave, own / other)


def test_octaves_have_equal_gradient_energy():
    """Amplitude ~ 1/frequency: each octave's RMS gradient is the same, so none dominates the events."""
    cfg = BandsDVSConfig()
    images = torch.as_tensor(band_textures(cfg, np.zeros(200, dtype=int), seed=1))
    radial, _ = cycles_per_view(cfg.scene, cfg.view)
    spectrum = torch.fft.fft2(images)
    gradient = []
    for k in range(len(BANDS)):
        keep = (radial >= 2 ** k) & (radial < 2 ** (k + 1))
        gradient.append(float((spectrum.abs().pow(2) * radial.pow(2) * keep).sum()))
    assert max(gradient) / min(gradient) < 1.35, gradient


def test_bands_datasets_shapes_balance_and_event_counts(bands_dir):
    counts = {}
    for name, band in data.BAND_DATASETS.items():
        train, test, info = data.build_datasets(name, bands_dir)
        assert info == data.DatasetInfo(name, 4, 2, (16, 16), 4)
        assert (len(train), len(test)) == (800, 400)
        assert np.bincount(train.targets).tolist() == [200] * 4 and np.bincount(test.targets).tolist() == [100] * 4
        x, _ = train[0]
        assert x.shape == (4, 2, 16, 16) and x.sum() > 0
        counts[band] = float(np.mean([test[i][0].sum() for i in range(0, 400, 10)]))
    assert max(counts.values()) / min(counts.values()) < 1.15, counts  # the octaves give events alike


@pytest.mark.parametrize("name", list(data.BAND_DATASETS))
def test_class_information_lives_in_the_chosen_octave(bands_dir, name):
    """Measured on the event frames the models see: a linear probe tells the classes apart from the
    chosen octave (well above chance, 0.25) and not from any band below it (DC included); the event
    camera's rectification may carry some of it to higher octaves, never lower."""
    accuracy = table4.probe(name, bands_dir)
    band = data.BAND_DATASETS[name]
    order = ["dc", *BANDS]
    assert accuracy[band] > 0.40, accuracy
    for below in order[:order.index(band)]:
        assert accuracy[below] < 0.34, (below, accuracy)


def test_scene_larger_than_the_view_enters_at_the_edges():
    """A uniform scene larger than the view gives no edge events when it moves; the same patch the
    size of the view slides black in at the edges and does."""
    bright = np.ones((2, 24, 24))
    quiet = DigitsDVSConfig(canvas=16, digit_size=24, noise_hz=0.0, log_noise=0.0)
    events_in_scene, _ = simulate_digit_events(bright, quiet, seed=0)
    events_with_border, _ = simulate_digit_events(bright[:, :16, :16], replace(quiet, digit_size=16), seed=0)
    assert len(events_in_scene) == 0
    assert len(events_with_border) > 100


def test_band_textures_checks_the_band():
    with pytest.raises(ValueError, match="band must be one of"):
        band_textures(BandsDVSConfig(band="ultra"), np.zeros(2, dtype=int), seed=0)


def test_interval_is_students_t():
    mean, low, high = table4.interval([60.0, 62.0, 64.0])
    assert mean == 62.0
    assert high - mean == pytest.approx(4.303 * 2.0 / math.sqrt(3))  # t(0.975, 2) * s / sqrt(n)
    assert mean - low == pytest.approx(high - mean)
    with pytest.raises(ValueError, match="2 to 10 values"):
        table4.interval([1.0])


def test_verdicts_say_not_resolved_when_intervals_overlap():
    table = {"bands-high": {"max": {"low": 60.0, "high": 70.0}, "avg": {"low": 50.0, "high": 59.0},
                            "orig": {"low": 65.0, "high": 75.0}, "if": {"low": 71.0, "high": 80.0}}}
    assert table4.verdicts(table) == {"bands-high": {"avg": "better", "orig": "not resolved", "if": "worse"}}


def test_variants_are_one_change_from_max_former_tiny():
    import train
    import zoo
    base = zoo.create_model("max_former_tiny").cfg
    for variant in table4.VARIANTS:
        cfg = train.parse_args(["--dataset", "bands-high", *table4.VARIANTS[variant][0]])
        built = zoo.create_model(cfg.model, spec=cfg.spec, **({"neuron": cfg.neuron} if cfg.neuron else {})).cfg
        pairs = (("embeds", built.embeds, base.embeds), ("mixers", built.mixers, base.mixers),
                 ("neuron", built.neuron, base.neuron))
        changed = {field for field, ours, theirs in pairs if ours != theirs}
        assert changed == ({"neuron"} if variant == "if" else set() if variant == "max"
                           else {"mixers"} if variant == "ssa" else {"embeds"}), (variant, changed)


@pytest.mark.slow
def test_quick_grid_end_to_end(bands_dir, tmp_path):
    """`python table4.py --quick`: train.py runs for every cell, accuracies and intervals, the HF
    share of every block, the probe, the verdicts, the figure; a second call reads the cells back."""
    out = tmp_path / "t4"
    record = table4.main(["--quick", "--data-dir", bands_dir, "--out", str(out), "--jobs", "1"])
    grid = table4.QUICK
    assert set(record["table"]) == set(grid.datasets)
    for dataset, row in record["table"].items():
        assert set(row) == set(grid.variants)
        for variant, cell in row.items():
            assert len(cell["acc1"]) == len(grid.seeds) and all(0 <= a <= 100 for a in cell["acc1"])
            assert cell["low"] <= cell["mean"] <= cell["high"]
            assert set(cell["hf_share"]) == {"patch_embed1", "stage1.0", "patch_embed2", "stage2.0",
                                             "patch_embed3", "stage3.0"}
            log = (out / "runs" / f"{dataset}-{variant}-seed0" / "log.csv").read_text().splitlines()
            assert len(log) == 1 + grid.epochs  # train.py's own run folder, one row per epoch
    assert set(record["probe"]) == set(grid.datasets)
    assert (out / "table4.png").stat().st_size > 10_000
    as_text = lambda table: json.dumps(table, sort_keys=True)  # noqa: E731 (a silent layer's share is NaN != NaN)
    assert as_text(json.loads((out / "table4.json").read_text())["table"]) == as_text(record["table"])
    again = table4.main(["--quick", "--data-dir", bands_dir, "--out", str(out), "--jobs", "1"])
    assert as_text(again["table"]) == as_text(record["table"]) and again["wall_seconds"] == record["wall_seconds"]


def test_recorded_table4_matches_the_full_grid():
    """docs/results.json's table4 section is a full grid (every variant, dataset and seed of
    table4.FULL) whose summary follows from its own per-seed accuracies."""
    record = json.loads((Path(__file__).resolve().parents[1] / "docs" / "results.json").read_text())["table4"]
    assert record["grid"] == {k: list(v) if isinstance(v, tuple) else v
                              for k, v in asdict(table4.FULL).items()}
    assert record["dataset"] == {k: v for k, v in asdict(BandsDVSConfig()).items() if k != "band"}
    for dataset, row in record["table"].items():
        for variant, cell in row.items():
            assert (cell["mean"], cell["low"], cell["high"]) == pytest.approx(table4.interval(cell["acc1"]))
    assert record["verdicts"] == table4.verdicts(record["table"])


def test_the_pages_reading_follows_the_record():
    """docs/argument.md's plain words stay true of docs/results.json: no cell resolved, the means it
    ranks in that order, and bands-high near chance for every variant."""
    root = Path(__file__).resolve().parents[1]
    record = json.loads((root / "docs" / "results.json").read_text())["table4"]
    page = (root / "docs" / "argument.md").read_text()
    table = record["table"]
    assert "grid cannot resolve it" in page
    assert {w for row in record["verdicts"].values() for w in row.values()} == {"not resolved"}
    mean = {d: {v: c["mean"] for v, c in row.items()} for d, row in table.items()}
    assert max(mean["bands-mid"], key=mean["bands-mid"].get) == "max"
    assert max(mean["bands-low"], key=mean["bands-low"].get) == "if"
    assert min(mean["bands-high"].values()) == mean["bands-high"]["avg"]
    assert max(mean["bands-high"].values()) == mean["bands-high"]["max"] < 35
    hf = {v: table["bands-mid"][v]["hf_share"]["patch_embed2"] for v in table4.VARIANTS}
    assert max(hf, key=hf.get) == "orig" and hf["max"] > hf["avg"]


def test_a_cell_is_read_back_only_for_the_same_training():
    """A quick grid's cell (1 epoch, 64 samples) in the same folder is never taken for the full grid's."""
    quick = table4.cell_identity(table4.QUICK, "max", "bands-low", 0)
    assert quick == table4.cell_identity(table4.QUICK, "max", "bands-low", 0)
    assert quick != table4.cell_identity(table4.FULL, "max", "bands-low", 0)
    assert quick != table4.cell_identity(table4.QUICK, "avg", "bands-low", 0)
    assert json.loads(json.dumps(quick)) == quick  # survives cell.json unchanged
