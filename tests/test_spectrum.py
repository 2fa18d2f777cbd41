"""Frequency analysis (spectrum.py): spectra of known signals and the LIF membrane's response."""
import math

import pytest
import torch
from torch import nn

import checkpoints
import maxformer
import zoo
from neurons import IF, LIF
from spectrum import (as_maps, diagonal_profile, high_frequency_share, select_layers, spatial_spectra,
                      temporal_response)


class Source(nn.Module):
    """Ignores its input and emits fixed maps, so the probe sees exactly what a test chose."""

    def __init__(self, maps: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("maps", maps)
        self.out = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.maps)


def grid(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64),
                          indexing="ij")


def share_of(maps: torch.Tensor) -> float:
    return spatial_spectra(Source(maps.float()), [torch.zeros(1)], ["out"])[0].hf_share


def test_pure_sinusoid_puts_its_energy_at_its_frequency():
    h, w = grid(16)
    wave = torch.cos(2 * math.pi * 3 * (h + w) / 16)           # frequency (3, 3) bins
    (layer,) = spatial_spectra(Source(wave.expand(4, 2, 3, 16, 16).float()), [torch.zeros(1)], ["out"])
    assert layer.shape == (16, 16) and layer.maps == 4 * 2 * 3
    assert layer.signal == "membrane"
    assert layer.omega[3] == pytest.approx(2 * math.pi * 3 / 16)
    assert int(layer.rel_log_amp[1:].argmax()) + 1 == 3         # the diagonal peaks at k = 3
    expected = math.log1p(16 * 16 / 2)  # |F| = HW/2 at (3,3) and (-3,-3), 0 at DC
    assert layer.rel_log_amp[3] == pytest.approx(expected, abs=1e-3)
    others = torch.cat([layer.rel_log_amp[:3], layer.rel_log_amp[4:]])
    assert others.abs().max() < 1e-3


@pytest.mark.parametrize("k, share", [(1, 0.0), (3, 0.0), (5, 1.0), (8, 1.0)])
def test_sinusoid_share_is_all_or_nothing_around_half_nyquist(k, share):
    h, _ = grid(16)
    assert share_of(torch.cos(2 * math.pi * k * h / 16).expand(1, 2, 16, 16)) == pytest.approx(share, abs=1e-9)


def test_high_frequency_share_orders_smooth_noise_checkerboard():
    torch.manual_seed(0)
    noise = torch.randn(8, 8, 32, 32)
    g = torch.exp(-torch.arange(-4.0, 5.0) ** 2 / 8)               # Gaussian, sigma 2
    blur = (g[:, None] * g[None, :] / g.sum() ** 2).view(1, 1, 9, 9)
    smooth = nn.functional.conv2d(nn.functional.pad(noise.view(64, 1, 32, 32), (4, 4, 4, 4), mode="circular"),
                                  blur).view(8, 8, 32, 32)
    h, w = grid(32)
    checker = ((h + w) % 2).expand(1, 4, 32, 32)
    s_smooth, s_noise, s_checker = share_of(smooth), share_of(noise), share_of(checker)
    radial = torch.sqrt(sum(g ** 2 for g in torch.meshgrid(
        2 * math.pi * torch.fft.fftfreq(32).abs(), 2 * math.pi * torch.fft.fftfreq(32).abs(), indexing="ij")))
    white = float(((radial > math.pi / 2).sum()) / (32 * 32 - 1))  # share of bins above half Nyquist
    assert s_smooth < 0.01 < s_noise < s_checker
    assert s_noise == pytest.approx(white, abs=0.02)
    assert s_checker == pytest.approx(1.0)


def test_constant_map_has_no_defined_share():
    assert math.isnan(high_frequency_share(torch.zeros(4, 4).index_put_((torch.tensor(0), torch.tensor(0)),
                                                                        torch.tensor(5.0))))


def test_probe_says_spikes_for_lif_outputs_and_orders_layers_by_call():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), LIF(), nn.Conv2d(4, 4, 3, padding=1))
    x = torch.randn(6, 1, 8, 8) * 3
    layers = spatial_spectra(model, [x], select_layers(model, "2,neurons,0"))
    assert [(l.name, l.signal) for l in layers] == [("0", "membrane"), ("1", "spikes"), ("2", "membrane")]
    assert all(0 <= l.hf_share <= 1 for l in layers)
    assert layers[0].rel_log_amp[0] == 0


def test_silent_layer_is_labelled_and_has_no_share():
    (layer,) = spatial_spectra(Source(torch.zeros(2, 3, 8, 8)), [torch.zeros(1)], ["out"])
    assert layer.signal == "silent" and math.isnan(layer.hf_share)


def test_calibrated_batchnorm_makes_a_fresh_model_fire():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), LIF())
    model[1].running_mean.fill_(100.0)                                 # stale statistics: silent in eval
    batches = [torch.randn(4, 1, 8, 8) + 5 for _ in range(3)]
    maxformer.calibrate_batchnorm(model, batches)
    with torch.no_grad():
        conv_out = torch.cat([model[0](x) for x in batches])
        rate = float(model(batches[0]).mean())
    assert not model.training
    assert torch.allclose(model[1].running_mean, conv_out.mean((0, 2, 3)), atol=1e-4)
    assert model[1].momentum == 0.1
    assert 0 < rate < 1


def test_select_layers_rejects_unknown_names():
    with pytest.raises(ValueError, match="matches no module"):
        select_layers(nn.Sequential(nn.ReLU()), "stage9.*")


def test_as_maps_layouts():
    assert as_maps(torch.zeros(2, 3, 4, 5, 5)).shape == (24, 5, 5)
    assert as_maps(torch.zeros(6, 4, 5, 5)).shape == (24, 5, 5)
    assert as_maps(torch.zeros(2, 3, 4, 16)).shape == (24, 4, 4)   # [T, B, C, N] tokens
    assert as_maps(torch.zeros(2, 3, 4, 1, 9)).shape == (24, 3, 3)  # token mask [T, B, h, 1, N]
    assert as_maps(torch.zeros(2, 3, 16)) is None                   # head features [T, B, C]: no grid
    assert as_maps(torch.zeros(2, 3, 4, 10)) is None                # tokens of no square grid


def test_diagonal_profile_spans_zero_to_pi():
    omega, rel = diagonal_profile(torch.rand(8, 8))
    assert omega.tolist() == pytest.approx([0, math.pi / 4, math.pi / 2, 3 * math.pi / 4, math.pi])
    assert rel[0] == 0


@pytest.mark.parametrize("neuron, tau", [(LIF(2.0), 2.0), (LIF(4.0), 4.0), (IF(), math.inf)])
def test_measured_membrane_response_agrees_with_the_formula(neuron, tau):
    r = temporal_response(neuron, n_freqs=12, steps=128, warmup=64, trials=32)
    b = 1 - 1 / tau
    formula = (1 - b) / (1 - b * torch.exp(-1j * r.omega)).abs() if b < 1 else 1 / (2 * torch.sin(r.omega / 2))
    assert torch.allclose(r.theory, formula)
    assert torch.allclose(r.subthreshold, formula, rtol=1e-4)
    assert (r.rate >= 0).all() and r.rate.shape == r.omega.shape


def test_neuron_the_membrane_model_does_not_cover_is_refused():
    with pytest.raises(ValueError, match="input decay"):
        temporal_response(LIF(2.0, decay_input=False))


def test_rate_response_of_a_neuron_without_membrane_equation():
    from neurons import ReLUNeuron
    r = temporal_response(ReLUNeuron(), n_freqs=4, steps=64, warmup=8, trials=8, noise=0.0, bias=1.0)
    assert torch.isnan(r.subthreshold).all() and torch.isnan(r.theory).all()
    assert torch.allclose(r.rate, torch.ones(4, dtype=torch.float64), atol=1e-5)  # relu passes every tone


# ------------------------------------------------------------------ command line, offline default


def read_csv(path) -> list[dict]:
    import csv
    with open(path) as f:
        return list(csv.DictReader(f))


def test_spatial_and_compare_commands_write_their_files(digits_dir, tmp_path, capsys):
    from spectrum import main
    common = ["--data-dir", digits_dir, "--samples", "6", "--batch-size", "3", "--out", str(tmp_path), "--untrained"]
    main(["spatial", *common])
    tag = tmp_path / "max_former_tiny_digits-dvs_untrained"
    rows = read_csv(f"{tag}_spectra.csv")
    assert {r["layer"] for r in rows} >= {"patch_embed1.lif", "patch_embed2.max_embed1.pool", "stage1.0.mixer",
                                           "stage3.0"}
    assert all(r["signal"] in ("spikes", "membrane", "silent") for r in rows)
    shares = [float(r["hf_share"]) for r in rows if r["signal"] != "silent"]
    assert shares and all(0 <= s <= 1 for s in shares)
    profiles = read_csv(f"{tag}_profiles.csv")
    omega = [float(p["omega"]) for p in profiles if p["layer"] == "stage1.0"]
    assert omega[0] == 0 and omega[-1] == pytest.approx(math.pi, rel=1e-5) and len(omega) == 24 // 2 + 1
    main(["compare", *common])
    rows = read_csv(f"{tag}_compare.csv")
    assert {r["model"] for r in rows} == {"max_former_tiny", "embed=orig,avg,avg mixer=dwc3,dwc3,dwc3"}
    for suffix in ("fig6.png", "hf_share.png", "compare.png"):
        assert (tmp_path / f"max_former_tiny_digits-dvs_untrained_{suffix}").stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "stage3.0" in out
    assert "analysing max_former_tiny on digits-dvs, untrained" in out  # stdout says what is analysed


def test_temporal_and_layers_commands(tmp_path, capsys):
    from spectrum import main
    main(["temporal", "--trials", "16", "--steps", "64", "--freqs", "8", "--out", str(tmp_path)])
    rows = read_csv(tmp_path / "temporal_response.csv")
    assert len(rows) == 16 and {r["neuron"] for r in rows} == {"LIF (tau=2)", "IF"}
    assert (tmp_path / "temporal_response.png").stat().st_size > 10_000
    main(["layers", "--model", "max_former_tiny"])
    out = capsys.readouterr().out
    assert "fig6: max-pool" in out and "stage1.0.mixer" in out


def test_tags_keep_variants_and_checkpoints_apart():
    """Outputs are named after model, spec, dataset and weights: none overwrites another's files."""
    from pathlib import Path

    from analysis_cli import Analysed
    base = Analysed(nn.Identity(), "max_former_tiny", None, None)
    variant = Analysed(nn.Identity(), "max_former_tiny", "embed=orig,avg,avg", None)
    trained = Analysed(nn.Identity(), "max_former_tiny", None, Path("runs/digits-dvs-max_former_tiny-x/best.pth"))
    shipped = Analysed(nn.Identity(), "max_former_tiny", None, Path("docs/checkpoints/max_former_tiny_seed1.pth"))
    assert base.tag("digits-dvs") == "max_former_tiny_digits-dvs_untrained"
    assert variant.tag("digits-dvs") == "max_former_tiny_embed-orig-avg-avg_digits-dvs_untrained"
    assert trained.tag("digits-dvs") == "max_former_tiny_digits-dvs_digits-dvs-max_former_tiny-x-best"
    assert shipped.tag("digits-dvs") == "max_former_tiny_digits-dvs_max_former_tiny_seed1"
    assert variant.title("digits-dvs") == "max_former_tiny [embed=orig,avg,avg] on digits-dvs, untrained"
    assert shipped.title("digits-dvs") == "max_former_tiny on digits-dvs, max_former_tiny_seed1.pth"


def test_avg_twin_of_the_tiny_model_is_the_shipped_avg_run():
    from analysis_cli import AVG_TINY
    from spectrum import avg_variant_spec
    assert avg_variant_spec(zoo.create_model("max_former_tiny")) == AVG_TINY


def test_shipped_checkpoints_are_small_and_analysed_by_default(digits_dir, tmp_path, capsys):
    """docs/checkpoints/ holds every run of analysis_cli.SHIPPED (each under 1 MB, with its config);
    spatial and compare use them when no --checkpoint is given, so a reader sees trained networks."""
    from analysis_cli import SHIPPED
    from spectrum import main
    for run in SHIPPED:
        for seed in run.seeds:
            assert run.path(seed).stat().st_size < 1_000_000, run.path(seed)
            assert checkpoints.read_checkpoint(run.path(seed))["format"].startswith("maxformer-train/")
    common = ["--data-dir", digits_dir, "--samples", "4", "--batch-size", "4", "--out", str(tmp_path)]
    main(["compare", *common, "--seed", "1"])
    out = capsys.readouterr().out
    assert "analysing max_former_tiny on digits-dvs, max_former_tiny_seed1.pth" in out
    assert "max_former_tiny_avg_seed1.pth" in out and "untrained" not in out
    assert (tmp_path / "max_former_tiny_digits-dvs_max_former_tiny_seed1_compare.csv").exists()


def test_compare_treats_both_sides_alike(digits_dir, tmp_path, capsys):
    """A trained model is never set beside an untrained variant (the tutorial once did that)."""
    from analysis_cli import SHIPPED
    from spectrum import main
    ckpt = str(SHIPPED[0].path(0))
    with pytest.raises(SystemExit) as exit_:
        main(["compare", "--data-dir", digits_dir, "--samples", "2", "--out", str(tmp_path), "--checkpoint", ckpt,
              "--variant", "embed=orig,max,avg"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "both sides alike" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("flags, words", [
    (["--spec", "embed=orig,avg,avg"], ["avg", "max"]),
    (["-T", "8"], ["T", "4", "8"]),
    (["--model", "max_former_cifar10"], ["max_former_tiny", "max_former_cifar10"]),
    (["--untrained", "--checkpoint", "x.pth"], ["--untrained"]),
    (["--samples", "0"], ["--samples"]),
])
def test_bad_input_exits_2_with_one_line(digits_dir, tmp_path, capsys, flags, words):
    """A flag that contradicts the checkpoint is an error naming both values, never a silent rebuild."""
    from analysis_cli import SHIPPED
    from spectrum import main
    args = ["spatial", "--data-dir", digits_dir, "--samples", "2", "--out", str(tmp_path)]
    if "--checkpoint" not in flags:
        args += ["--checkpoint", str(SHIPPED[0].path(0))]
    with pytest.raises(SystemExit) as exit_:
        main(args + flags)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("spectrum.py: error:")
    assert all(w in err for w in words), err
