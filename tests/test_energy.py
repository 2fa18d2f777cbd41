"""Energy estimate (energy.py): operation counts checked against hand-computed values."""
import math

import pytest
import torch
from torch import nn

import checkpoints
import maxformer
import zoo
from energy import E_AC_PJ, E_MAC_PJ, OpCounter, estimate_energy, stage_of, table9
from neurons import LIF

T = 4


class Fold(nn.Module):
    """Runs ``layer`` on ``[B, T, ...]`` input with time folded into batch, as the models do."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.transpose(0, 1).flatten(0, 1))


class StandIn(nn.Module):
    """Stem conv -> LIF -> conv -> mean -> Linear, taking static ``[B,C,H,W]`` or event ``[B,T,C,H,W]``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1, bias=False)
        self.lif = LIF()
        self.conv = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(0).repeat(T, 1, 1, 1, 1) if x.dim() == 4 else x.transpose(0, 1)  # [T,B,C,H,W]
        y = self.stem(x.flatten(0, 1)) * 4                                               # [T*B,4,H,W]
        s = self.lif(y.unflatten(0, (T, -1)))                                            # [T,B,4,H,W]
        z = self.conv(s.flatten(0, 1)).mean((2, 3))                                      # [T*B,8]
        return self.head(z.unflatten(0, (T, -1))).mean(0)                                # [B,3]


def count(model: nn.Module, x: torch.Tensor):
    with torch.no_grad(), OpCounter(model, T) as counter:
        model(x)
    return counter.report()


def spikes(shape, rate: float) -> torch.Tensor:
    """A binary tensor whose firing rate is exactly ``rate`` (a multiple of 1/8)."""
    flat = torch.zeros(math.prod(shape))
    flat[torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(0))[: int(rate * flat.numel())]] = 1
    return flat.view(shape)


@pytest.mark.parametrize("layer, size, flops", [
    (nn.Conv2d(4, 8, 3, stride=2, padding=1), 10, 5 * 5 * 8 * 4 * 9),
    (nn.Conv2d(8, 8, 3, padding=1, groups=8), 6, 6 * 6 * 8 * 1 * 9),
    (nn.Conv2d(4, 6, 1, groups=2), 6, 6 * 6 * 6 * 2),
    (nn.Conv2d(4, 8, (3, 1), stride=(1, 2)), 8, 6 * 4 * 8 * 4 * 3),
])
def test_conv_flops_and_sops_match_hand_counts(layer, size, flops):
    x = spikes((2, T, layer.in_channels, size, size), 0.25)
    (row,) = count(Fold(layer), x).layers
    assert row.flops == flops
    assert row.mode == "AC" and row.rate == 0.25
    assert row.sops == pytest.approx(0.25 * T * flops)
    assert row.macs == 0
    assert row.energy_mj == pytest.approx(E_AC_PJ * 0.25 * T * flops * 1e-9)


def test_conv1d_and_linear_flops():
    conv = count(Fold(nn.Conv1d(6, 12, 1)), spikes((3, T, 6, 16), 0.5)).layers[0]
    assert conv.flops == 16 * 12 * 6
    linear = count(Fold(nn.Linear(10, 3)), spikes((3, T, 5, 10), 0.5)).layers[0]
    assert linear.flops == 5 * 3 * 10
    assert linear.sops == pytest.approx(0.5 * T * 5 * 3 * 10)


def test_static_image_stem_is_mac_once_and_spike_layers_are_ac():
    torch.manual_seed(0)
    report = count(StandIn(), torch.randn(2, 2, 8, 8))
    stem, conv, head = report.layers
    assert stem.mode == "MAC" and math.isnan(stem.rate)
    assert stem.flops == 8 * 8 * 4 * 2 * 9
    assert stem.macs == stem.flops          # same input at every step: computed once
    assert stem.sops == 0
    assert conv.mode == "AC"
    assert conv.rate == pytest.approx(report.neuron_rates["lif"])
    assert 0 < conv.rate < 1
    assert conv.sops == pytest.approx(conv.rate * T * 4 * 4 * 8 * 4 * 9)
    assert head.mode == "MAC" and head.macs == T * 8 * 3  # fed averaged (non-binary) features
    assert report.energy_mj == pytest.approx(
        (E_MAC_PJ * (stem.macs + head.macs) + E_AC_PJ * conv.sops) * 1e-9)
    assert report.ann_energy_mj == pytest.approx(E_MAC_PJ * (stem.flops + conv.flops + head.flops) * 1e-9)


def test_event_frames_count_as_mac_at_every_step():
    """Event frames hold event counts (0, 1, 2, ...): not binary, different at each step -> T x MAC."""
    frames = torch.randint(0, 3, (2, T, 2, 8, 8)).float()
    stem = count(StandIn(), frames).layers[0]
    assert stem.mode == "MAC" and stem.macs == T * stem.flops
    binary_frames = (frames > 1).float()      # frames clipped to {0, 1} are spikes: AC
    stem = count(StandIn(), binary_frames).layers[0]
    assert stem.mode == "AC"
    assert stem.sops == pytest.approx(float(binary_frames.mean()) * T * stem.flops)


def test_one_non_binary_batch_makes_the_layer_mac():
    model = Fold(nn.Conv2d(2, 2, 1))
    with torch.no_grad(), OpCounter(model, T) as counter:
        model(spikes((2, T, 2, 4, 4), 0.5))
        model(torch.rand(2, T, 2, 4, 4))
    (row,) = counter.report().layers
    assert row.mode == "MAC" and row.macs == T * row.flops
    assert counter.samples == 4


def test_energy_constants_override_and_samples_average():
    batches = [spikes((2, T, 4, 6, 6), 0.5), spikes((1, T, 4, 6, 6), 0.5)]
    report = estimate_energy(Fold(nn.Conv2d(4, 4, 3, padding=1)), batches, T, e_mac_pj=1.0, e_ac_pj=2.0)
    (row,) = report.layers
    assert report.samples == 3
    assert row.energy_mj == pytest.approx(2.0 * 0.5 * T * 6 * 6 * 4 * 4 * 9 * 1e-9)


@pytest.mark.parametrize("model, name, expected", [
    ("max_former_cifar10", "patch_embed2.max_embed1.embed_conv", ("2", "embedding")),
    ("max_former_cifar10", "stage3.1.attn.q_conv", ("3", "mixer")),
    ("max_former_cifar10", "stage3.1.attn.kv_product", ("3", "mixer")),
    ("max_former_cifar10", "stage1.0.mixer.conv", ("1", "mixer")),
    ("max_former_cifar10", "stage2.0.mlp.fc1_conv", ("2", "mlp")),
    ("max_former_cifar10", "head", ("head", "classifier")),
    ("max_resnet18_cifar10", "layer2.0.conv1", ("2", "block")),
    ("max_resnet18_cifar10", "conv1", ("stem", "embedding")),
    ("max_resnet18_cifar10", "something", ("-", "other")),
])
def test_stage_of(model, name, expected):
    with torch.device("meta"):
        net = zoo.create_model(model)
    assert stage_of(net, name) == expected


def test_stage_of_other_modules_is_other():
    assert stage_of(nn.Linear(2, 2), "head") == ("-", "other")


def test_no_forward_is_a_clear_error():
    with pytest.raises(RuntimeError, match="no forward pass"):
        OpCounter(nn.Linear(2, 2), T).report()


# ------------------------------------------------------------------ the project's models

def real_report(name: str, x: torch.Tensor, **overrides):
    torch.manual_seed(0)
    model = maxformer.calibrate_batchnorm(zoo.create_model(name, **overrides), [x])
    return estimate_energy(model, [x], model.T)


def test_attention_products_follow_the_documented_convention():
    report = real_report("ms_qkformer_cifar10", torch.randn(2, 3, 16, 16), dims=(16, 32, 64), num_heads=4,
                         img_size=16)
    rows, rates = {l.name: l for l in report.layers}, report.neuron_rates
    n1, d1 = 16 * 16, 16 // 4                      # stage 1 token attention: 16x16 tokens, D = 16
    assert rows["stage1.0.attn.q_sum"].flops == n1 * 16
    assert rows["stage1.0.attn.mask_product"].flops == n1 * 4 * d1
    assert rows["stage1.0.attn.q_sum"].rate == pytest.approx(rates["stage1.0.attn.q_lif"])
    assert rows["stage1.0.attn.mask_product"].rate == pytest.approx(rates["stage1.0.attn.attn_lif"])
    n3, d3 = 4 * 4, 64 // 4                        # stage 3 SSA: 4x4 tokens, D = 64, 4 heads
    for product, neuron in (("kv_product", "k_lif"), ("qkv_product", "q_lif")):
        row = rows[f"stage3.1.attn.{product}"]
        assert row.flops == n3 * 64 * d3
        assert row.mode == "AC" and row.rate == pytest.approx(rates[f"stage3.1.attn.{neuron}"])
        assert row.sops == pytest.approx(row.rate * T * row.flops)
        assert row.stage == "3" and row.component == "mixer"


def test_static_resnet_counts_stem_once_and_membrane_shortcut_every_step():
    report = real_report("max_resnet18_cifar10", torch.randn(2, 3, 16, 16), layers=(1, 1), widths=(8, 16))
    rows = {l.name: l for l in report.layers}
    assert rows["conv1"].flops == 16 * 16 * 64 * 3 * 9 and rows["conv1"].macs == rows["conv1"].flops
    shortcut = rows["layer2.0.downsample.1"]      # 1x1 stride-2 conv on the block's membrane input
    assert shortcut.flops == 8 * 8 * 16 * 8 and shortcut.mode == "MAC" and shortcut.macs == T * shortcut.flops
    # also MAC: layer1's shortcut (64 -> 8 channels, on the membrane) and the classifier, which reads
    # the spatial mean of spikes (LIF -> global average pool -> Linear): not binary
    assert {n for n, l in rows.items() if l.mode == "MAC"} == {"conv1", "layer1.0.downsample.1",
                                                                "layer2.0.downsample.1", "fc1"}
    assert rows["fc1"].flops == 16 * 10


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    return torch.randint(0, 3, (2, T, 2, 24, 24), generator=torch.Generator().manual_seed(0)).float()


@pytest.fixture(scope="module")
def tiny(frames):
    return real_report("max_former_tiny", frames)


def test_event_model_stem_is_mac_every_step_and_ann_twin_is_all_mac(frames, tiny):
    snn = tiny
    stem = snn.layers[0]
    assert stem.name == "patch_embed1.proj_conv" and stem.mode == "MAC" and stem.macs == T * stem.flops
    assert all(l.mode == "AC" for l in snn.layers[1:])
    ann = real_report("max_former_tiny_ann", frames)
    assert all(l.mode == "MAC" for l in ann.layers)
    assert [l.flops for l in ann.layers] == [l.flops for l in snn.layers]
    assert ann.energy_mj == pytest.approx(E_MAC_PJ * sum(l.macs for l in ann.layers) * 1e-9)
    assert snn.energy_mj < snn.ann_energy_mj * T


def test_table9_rows_add_up(tiny):
    report = tiny
    rows = table9(report)
    assert [r["stage"] for r in rows] == ["1", "2", "3", "head", "total"]
    assert list(rows[0]) == ["stage", "embedding", "mixer", "mlp", "classifier", "total"]
    assert rows[-1]["total"] == pytest.approx(report.energy_mj)
    assert sum(r["total"] for r in rows[:-1]) == pytest.approx(report.energy_mj)


# ------------------------------------------------------------------ command line, offline default


def test_command_line_writes_tables(digits_dir, tmp_path, capsys):
    import csv

    from energy import main
    main(["--data-dir", digits_dir, "--samples", "6", "--batch-size", "3", "--out", str(tmp_path), "--untrained"])
    tag = tmp_path / "max_former_tiny_digits-dvs_untrained"
    with open(f"{tag}_energy_layers.csv") as f:
        layers = list(csv.DictReader(f))
    assert layers[0]["name"] == "patch_embed1.proj_conv" and layers[0]["mode"] == "MAC"  # event counts
    assert all(l["mode"] == "AC" for l in layers[1:])
    with open(f"{tag}_energy_table9.csv") as f:
        assert [r["stage"] for r in csv.DictReader(f)] == ["1", "2", "3", "head", "total"]
    with open(f"{tag}_firing_rates.csv") as f:
        rates = [float(r["rate"]) for r in csv.DictReader(f)]
    assert rates and all(0 <= r <= 1 for r in rates) and max(rates) > 0
    text = (tmp_path / "max_former_tiny_digits-dvs_untrained_energy.md").read_text()
    assert "Table 9 layout" in text and "untrained" in text.splitlines()[0]
    assert "SNN energy" in capsys.readouterr().out


@pytest.fixture(scope="module")
def avg_checkpoint(tmp_path_factory) -> str:
    """One of our checkpoints of the Avg-Pool twin (random weights), with the config it records."""
    torch.manual_seed(0)
    model = zoo.create_model("max_former_tiny", spec="embed=orig,avg,avg")
    path = tmp_path_factory.mktemp("ckpt") / "avg.pth"
    torch.save({"format": "maxformer-train/1", "model": model.state_dict(), "model_config": model.config_record,
                "args": {"model": "max_former_tiny", "spec": "embed=orig,avg,avg"}}, path)
    return str(path)


def test_energy_of_a_checkpoint_comes_from_its_config(digits_dir, tmp_path, avg_checkpoint, capsys):
    """energy.py builds the model the checkpoint records: the same numbers as that model built by
    hand; and a --spec that contradicts it is an error naming both values. Seen: a checkpoint
    analysed with a wrong spec gave 0.0041 mJ instead of 0.0083 mJ, without a word."""
    import csv

    import data
    from energy import main
    common = ["--data-dir", digits_dir, "--samples", "4", "--batch-size", "4", "--out", str(tmp_path)]
    main([*common, "--checkpoint", avg_checkpoint])
    name = "max_former_tiny_embed-orig-avg-avg_digits-dvs_avg_energy_layers.csv"
    with open(tmp_path / name) as f:
        total = sum(float(r["energy_mj"]) for r in csv.DictReader(f))
    _, test, info = data.build_datasets("digits-dvs", data_dir=digits_dir, augment=False)
    x = torch.stack([test[i][0] for i in data.seeded_subset(test, 4, 0).indices])
    model = checkpoints.load_model(avg_checkpoint)
    assert total == pytest.approx(estimate_energy(model, [x], 4).energy_mj, rel=1e-5)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main([*common, "--checkpoint", avg_checkpoint, "--spec", "embed=orig,max,max"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1
    assert "avg" in err and "max" in err and err.startswith("energy.py: error:")
