"""The model zoo equals the authors' models: parameter counts, state-dict layouts, checkpoint loading,
shapes and gradients of every variant, and input validation (docs/reference/models.md, Tables 1, 4, 5, 7)."""
import argparse
import contextlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Callable

import pytest
import torch
from torch.multiprocessing.reductions import StorageWeakRef

import kernels
import maxformer
import neurons
from checkpoints import (KEY_ALIASES, CheckpointError, CheckpointMismatchError, load_model, load_official,
                         read_checkpoint)
from zoo import create_model, list_models, model_config, parse_spec

LAYOUTS = sorted((Path(__file__).parent / "reference").glob("*.json"))


@lru_cache(maxsize=None)
def layout(path: Path) -> dict:
    return json.loads(path.read_text())


def official_keys(path: Path) -> list[str]:
    """The layout's keys with the known older names mapped to ours (load_official does the same)."""
    keys = []
    for key in layout(path)["state_dict"]:
        for old, new in KEY_ALIASES:
            key = key.replace(old, new)
        keys.append(key)
    return keys


def random_official_state_dict(path: Path) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {k: torch.randn(shape, generator=gen) if shape else torch.tensor(7)
            for k, shape in layout(path)["state_dict"].items()}


def lively(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with random BN statistics and gains large enough that every layer fires in eval mode
    (a fresh model's running mean 0 and variance 1 leave it silent: its logits are all zero)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(1.5, 3.0)
                m.bias.uniform_(-0.2, 0.2)
    return model


def varied(logits: torch.Tensor) -> torch.Tensor:
    """``logits``, after checking that they differ between samples (a silent model gives all zeros)."""
    assert logits.std(0).max() > 1e-3
    return logits


@pytest.mark.parametrize("path", LAYOUTS, ids=lambda p: p.stem)
def test_parameter_count_and_layout_equal_official(path):
    """Exact parameter count (docs/reference/models.md table) and the same keys, shapes and order as the authors'."""
    model = create_model(path.stem)
    assert sum(p.numel() for p in model.parameters()) == layout(path)["parameters"]
    sd = model.state_dict()
    assert list(sd) == official_keys(path)
    assert [list(v.shape) for v in sd.values()] == list(layout(path)["state_dict"].values())


@pytest.mark.parametrize("path", LAYOUTS, ids=lambda p: p.stem)
def test_load_official_every_layout(path):
    """Random tensors in each official layout load by name (all consumed) and the model runs."""
    model = create_model(path.stem)
    official = random_official_state_dict(path)
    load_official(model, {"model": {f"module.{k}": v for k, v in official.items()}})
    for (key, ours), theirs in zip(model.state_dict().items(), official.values()):
        assert torch.equal(ours, theirs), key
    model.eval()
    cfg = model.cfg
    size = 2 * model.stride
    shape = (1, 2, cfg.in_channels, size, size) if cfg.in_channels == 2 else (1, cfg.in_channels, size, size)
    with torch.no_grad():
        assert model(torch.rand(shape)).shape == (1, cfg.num_classes)


def test_load_official_wrappers_prefix_and_positional_names(tmp_path):
    """``{"state_dict": ...}``, DDP's ``module.`` prefix, a file path, and older key names (by position)."""
    path = LAYOUTS[[p.stem for p in LAYOUTS].index("max_former_cifar10")]
    official = random_official_state_dict(path)
    file = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in official.items()}}, file)
    model = load_official(create_model("max_former_cifar10"), file)
    assert torch.equal(model.head.weight, official["head.weight"])
    renamed = {f"old_name_{i}": v for i, v in enumerate(official.values())}
    model = load_official(create_model("max_former_cifar10"), renamed)
    assert torch.equal(model.patch_embed1.proj_conv.weight, official["patch_embed1.proj_conv.weight"])


def test_load_official_imagenet_older_dwc7_names():
    """The released ImageNet files name the stage-1 DWC-7 ``conv5``; they load onto ``conv``."""
    path = LAYOUTS[[p.stem for p in LAYOUTS].index("max_former_10_384")]
    official = random_official_state_dict(path)
    assert "stage1.0.mixer.conv5.weight" in official
    model = load_official(create_model("max_former_10_384"), official)
    assert torch.equal(model.stage1[0].mixer.conv.weight, official["stage1.0.mixer.conv5.weight"])


def test_load_official_lists_every_mismatch():
    """Missing, unexpected and mis-shaped tensors are all named in one error."""
    path = LAYOUTS[[p.stem for p in LAYOUTS].index("max_former_cifar10")]
    official = random_official_state_dict(path)
    del official["head.bias"]
    official["surprise.weight"] = torch.zeros(1)
    official["head.weight"] = torch.zeros(3, 384)
    with pytest.raises(CheckpointMismatchError) as err:
        load_official(create_model("max_former_cifar10"), official)
    message = str(err.value)
    assert "missing (1): head.bias" in message
    assert "unexpected (1): surprise.weight" in message
    assert "head.weight: checkpoint [3, 384] vs model [10, 384]" in message
    official = random_official_state_dict(path)
    with pytest.raises(CheckpointMismatchError, match="head.weight"):
        load_official(create_model("max_former_cifar100"), official)


def test_load_official_refuses_pickled_objects_unless_opted_in(tmp_path):
    """A file that pickles non-tensor objects is refused by ``weights_only`` loading, with the opt-in named."""
    model = create_model("max_former_tiny")
    file = tmp_path / "with_args.pth"
    torch.save({"model": model.state_dict(), "args": argparse.Namespace(lr=1e-3)}, file)
    with pytest.raises(ValueError, match="allow_pickle=True"):
        load_official(create_model("max_former_tiny"), file)
    load_official(create_model("max_former_tiny"), file, allow_pickle=True)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_official(model, tmp_path / "nope.pth")


def test_list_models_names_the_zoo():
    names = list_models()
    for path in LAYOUTS:
        assert path.stem in names
    for extra in ("max_resnet18_2222_cifar10", "max_former_tiny", "max_former_cifar10_ann",
                  "ms_qkformer_cifar10dvs", "ms_qkformer_dvsgesture"):
        assert extra in names
    assert create_model("max_resnet18_2222_cifar100").cfg.layers == (2, 2, 2, 2)
    assert sum(p.numel() for p in create_model("max_resnet18_2222_cifar100").parameters()) == 11_220_132


def test_unknown_model_and_override_errors():
    with pytest.raises(ValueError, match="max_former_cifar10"):
        create_model("max_former_cifar11")
    with pytest.raises(ValueError, match="valid:"):
        create_model("max_former_cifar10", depthz=3)
    with pytest.raises(ValueError, match="unknown token mixer 'foo'"):
        create_model("max_former_cifar10", spec="mixer=id,foo,ssa")
    with pytest.raises(ValueError, match="unknown patch embedding"):
        create_model("max_former_cifar10", spec="embed=orig,bar,max")
    with pytest.raises(ValueError, match="odd"):
        create_model("max_former_cifar10", spec="mixer=id,dwc4,ssa")
    with pytest.raises(ValueError, match="key=value"):
        parse_spec("mixer")


SMALL = dict(dims=(16, 32, 64), num_heads=2, mlp_ratio=2.0)
EMBEDS = ["orig", "orig_later", "max", "avg", "1max", "max_plus", "orig_imagenet", "qk_init", "qk_stage"]
MIXERS = ["id", "max", "avg", "dwc1", "dwc3", "dwc5", "dwc7", "ssa", "ssa_dwc", "qk"]


def check_forward_backward(model: torch.nn.Module, x: torch.Tensor, classes: int) -> None:
    out = model(x)
    assert out.shape == (x.shape[0], classes)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"


@pytest.mark.parametrize("embed", EMBEDS)
def test_every_patch_embedding_in_stage_one(embed):
    """Each embedding works as stage 1 (raw input) and its stride is what docs/reference/models.md says."""
    torch.manual_seed(0)
    model = create_model("max_former_cifar10", embeds=(embed, "max", "max"), depths=(1, 1, 1), **SMALL)
    strides = {"orig": 1, "orig_later": 2, "max": 2, "avg": 2, "1max": 2, "max_plus": 8,
               "orig_imagenet": 4, "qk_init": 4, "qk_stage": 2}
    assert model.stride == strides[embed] * 4
    size = model.stride * 2
    feats = model.forward_features(torch.rand(2, 2, 3, size, size))
    assert feats.shape == (2, 2, 64, 2, 2)
    check_forward_backward(model, torch.rand(2, 3, size, size), 10)


@pytest.mark.parametrize("mixer", MIXERS)
def test_every_token_mixer(mixer):
    """Each mixer keeps the membrane shape and passes gradients (spec string ``mixer=...``)."""
    torch.manual_seed(0)
    model = create_model("max_former_cifar10", spec=f"mixer={mixer},{mixer},{mixer} depth=1,1,1", **SMALL)
    check_forward_backward(model, torch.rand(2, 3, 16, 16), 10)


def test_spec_string_builds_ablation_variants():
    """``embed=orig,max,max mixer=id,dwc3,ssa`` is the official CIFAR model; other specs differ."""
    official = create_model("max_former_cifar100")
    from_spec = create_model("max_former_cifar100", spec="embed=orig,max,max mixer=id,dwc3,ssa depth=1,1,2")
    assert [v.shape for v in official.state_dict().values()] == [v.shape for v in from_spec.state_dict().values()]
    avg = create_model("max_former_cifar100", spec="embed=orig,orig,orig mixer=avg,avg,avg")
    assert isinstance(avg.patch_embed2, maxformer.EmbedOrigLater)
    assert avg.patch_embed2.embed2.embed_conv.stride == (2, 2)
    assert isinstance(avg.stage1[0].mixer, maxformer.PoolMixer)
    narrow = create_model("max_former_cifar10", width=192)
    assert narrow.cfg.dims == (48, 96, 192) and narrow.head.in_features == 192
    assert parse_spec("dim=8,16 depth=2,3 mlp=1 heads=4 layers=2,2") == {
        "dims": (8, 16), "depths": (2, 3), "mlp_ratio": 1.0, "num_heads": 4, "layers": (2, 2)}


@pytest.mark.parametrize("name", ["max_former_cifar10dvs", "ms_qkformer_dvsgesture", "max_resnet18_cifar10",
                                  "max_resnet18_2222_cifar10", "max_former_10_384", "ms_qkformer_10_384"])
def test_official_architectures_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name)
    cfg = model.cfg
    size = 2 * model.stride
    x = torch.rand(2, 3, 2, size, size) if cfg.in_channels == 2 else torch.rand(2, 3, size, size)
    check_forward_backward(model, x, cfg.num_classes)


def test_event_input_runs_with_its_own_T_and_static_input_is_repeated():
    """Events ``[B, T, C, H, W]`` run with the T they carry; a static image equals its T-fold repeat."""
    torch.manual_seed(0)
    model = lively(create_model("max_former_tiny")).eval()
    events = torch.rand(3, 7, 2, 24, 24)
    assert model(events).shape == (3, 10)
    image = torch.rand(3, 2, 24, 24) * 3
    repeated = image.unsqueeze(1).expand(3, model.T, 2, 24, 24)
    assert torch.equal(varied(model(image)), model(repeated))


def test_stateless_between_calls():
    """No reset needed: the same input gives the same output twice (membranes start at zero)."""
    torch.manual_seed(0)
    model = lively(create_model("max_former_tiny")).eval()
    x = torch.rand(2, 4, 2, 24, 24) * 3
    assert torch.equal(varied(model(x)), model(x))


def test_ann_twin_has_no_spikes():
    """``<name>_ann`` swaps every spiking neuron for ReLU (Table 2, "Max-Former (ANN)")."""
    from neurons import LIF, ReLUNeuron
    ann = create_model("max_former_cifar10_ann")
    kinds = {type(m) for m in ann.modules() if isinstance(m, (LIF, ReLUNeuron))}
    assert kinds == {ReLUNeuron}
    snn = create_model("max_former_cifar10")
    assert {type(m) for m in snn.modules() if isinstance(m, (LIF, ReLUNeuron))} == {LIF}
    assert [v.shape for v in ann.state_dict().values()] == [v.shape for v in snn.state_dict().values()]


def test_attention_neurons_fire_at_half_threshold():
    model = create_model("max_former_cifar10")
    attn = model.stage3[0].attn
    assert attn.attn_lif.dynamics.v_threshold == 0.5 and attn.q_lif.dynamics.v_threshold == 1.0
    assert attn.num_heads == 8 and create_model("max_former_dvsgesture").stage2[0].attn.num_heads == 16
    assert create_model("max_former_10_768").stage3[0].attn.num_heads == 12


@pytest.mark.parametrize("shape, match", [
    ((3, 32, 32), "rank-3"),
    ((2, 1, 32, 32), "built for 3 input channels"),
    ((2, 3, 30, 30), "not divisible by the model's total stride 4"),
])
def test_bad_input_shapes_name_the_expected_shape(shape, match):
    model = create_model("max_former_cifar10")
    with pytest.raises(ValueError, match=match) as err:
        model(torch.rand(shape))
    assert "[B, 3, H, W]" in str(err.value)


def test_checkpoint_stages_gives_identical_gradients():
    """Activation checkpointing per stage recomputes the forward exactly: same loss, same gradients."""
    torch.manual_seed(0)
    model = create_model("max_former_tiny")
    x = torch.rand(2, 4, 2, 24, 24) * 2
    model(x).square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.checkpoint_stages = True
    model(x).square().sum().backward()
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(p.grad, g, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["max_former_tiny", "ms_qkformer_cifar10", "max_resnet18_cifar10", "max_former_10_384"])
def test_fuse_folds_every_batch_norm_and_keeps_outputs(name):
    """``model.fuse()`` (eval) removes every BN and the logits stay equal within 1e-5."""
    torch.manual_seed(0)
    model = lively(create_model(name, T=4)).eval()
    cfg, size = model.cfg, 2 * model.stride
    x = 4 * (torch.rand(2, 4, 2, size, size) if cfg.in_channels == 2 else torch.rand(2, 3, size, size))
    with torch.no_grad():
        before = model(x)
        after = model.fuse()(x)
    assert not any(isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)) for m in model.modules())
    varied(before)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)
    with pytest.raises(RuntimeError, match="eval"):
        create_model(name).fuse()


def test_register_a_new_mixer_and_embedding(monkeypatch):
    """Forking the project: a new token mixer and a new patch embedding, registered in a few lines,
    are usable from a spec string (docs/architecture.md shows the same code)."""

    class ShiftMixer(torch.nn.Module):  # a parameter-free mixer: roll the tokens one step right
        def __init__(self, dim, heads, neuron):
            super().__init__()

        def forward(self, x):
            return x.roll(1, dims=-1)

    class ConvEmbed(torch.nn.Module):  # a single stride-2 conv embedding
        stride = 2

        def __init__(self, cin, dim, neuron):
            super().__init__()
            self.lif = neuron()
            self.embed_conv, self.embed_bn = maxformer.conv_bn(cin, dim, 3, 2)

        def forward(self, x):
            return maxformer.unfold(self.embed_bn(self.embed_conv(maxformer.fold(self.lif(x)))), x.shape[0])

    monkeypatch.setitem(maxformer.MIXERS, "shift", ShiftMixer)
    monkeypatch.setitem(maxformer.EMBEDDINGS, "conv", ConvEmbed)
    model = create_model("max_former_cifar10", spec="embed=orig,conv,conv mixer=id,shift,ssa", **SMALL)
    assert isinstance(model.stage2[0].mixer, ShiftMixer) and isinstance(model.patch_embed3, ConvEmbed)
    assert model.stride == 4
    check_forward_backward(model, torch.rand(2, 3, 16, 16), 10)


def test_neuron_backend_override_reaches_every_neuron():
    """``neuron_backend=...`` picks the implementation of every LIF (all backends compute the same)."""
    from neurons import LIF
    model = create_model("max_former_tiny", neuron_backend="torch")
    assert {m.backend for m in model.modules() if isinstance(m, LIF)} == {"torch"}
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        create_model("max_former_tiny", neuron_backend="gpu")


@pytest.mark.parametrize("stride", [1, 2])
def test_lean_max_pool_equals_autograd_max_pool_bitwise(stride):
    """``kernels.MaxPool`` keeps two bytes per output (where in its window the maximum was) for the backward
    and runs channels_last on CPU (``kernels.max_pool``); outputs (contiguous, with and without
    autograd) and gradients are the same bits as ``nn.MaxPool2d`` in NCHW: ties (rounded inputs), NaN
    and infinities included, on odd and even sizes, channel counts that do not fill a vector, and a
    batch the CPU pool splits into unequal parts (2 + 1 samples of about 1.5 MB)."""
    torch.manual_seed(0)
    assert kernels.sample_chunk(torch.Size((3, 8, 190, 250)), 4) == 2
    for shape in ((4, 8, 16, 16), (2, 3, 15, 17), (2, 37, 9, 10), (3, 8, 190, 250)):
        x = torch.randn(shape).round()
        x.view(-1)[::97], x.view(-1)[5::89], x.view(-1)[7::101] = float("nan"), float("-inf"), float("inf")
        x.requires_grad_()
        ours, ref = kernels.MaxPool(stride)(x), torch.nn.MaxPool2d(3, stride, 1)(x)
        g = torch.randn_like(ref)
        assert ours.is_contiguous() and torch.equal(ours.isnan(), ref.isnan())
        assert torch.equal(ours.nan_to_num(), ref.nan_to_num())
        with torch.no_grad():
            assert torch.equal(kernels.MaxPool(stride)(x).nan_to_num(), ref.nan_to_num())
        assert torch.equal(*(torch.autograd.grad(y, x, g)[0] for y in (ours, ref)))
        assert kernels.saved_bytes(kernels.MaxPool(stride), x) == ours.numel() * 2  # an int16 offset per output
        assert kernels.saved_bytes(torch.nn.MaxPool2d(3, stride, 1), x) == x.numel() * 4 + ours.numel() * 8


@pytest.mark.parametrize("conv, shape", [
    (torch.nn.Conv2d(6, 8, 3, 2, 1, bias=False), (5, 6, 9, 9)),
    (torch.nn.Conv2d(6, 6, 5, 1, 2, groups=6), (5, 6, 8, 8)),
    (torch.nn.Conv1d(6, 8, 1), (5, 6, 12)),
])
def test_spike_conv_keeps_spikes_as_bytes_with_the_same_bits(conv, shape):
    """``kernels.spike_conv`` saves its binary input as one byte per element: outputs, input, weight
    and bias gradients equal autograd's bit for bit, and the saved input is a quarter of float32's."""
    torch.manual_seed(0)
    x = (torch.rand(shape) > 0.6).float().requires_grad_()
    results = []
    for fn in (conv, lambda z: kernels.spike_conv(conv, z)):
        y = fn(x)
        results.append([y, *torch.autograd.grad(y, [x, *conv.parameters()], torch.ones_like(y) + y.detach())])
    for ours, ref in zip(*results[::-1]):
        assert torch.equal(ours, ref)
    assert kernels.saved_bytes(conv, x) == x.numel() * 4  # parameters are not counted
    assert kernels.saved_bytes(lambda z: kernels.spike_conv(conv, z), x) == x.numel()


SMALL_T2 = dict(dims=(16, 32, 64), num_heads=2, T=2)
EVENT_SMALL = dict(dims=(32, 64), num_heads=2, T=2, img_size=32)
ATTENTION = dict(mixers=("dwc3", "qk", "ssa"))  # max_former_tiny with both attention mixers


@pytest.mark.parametrize("name, overrides", [
    ("max_former_tiny", {}), ("max_former_tiny", ATTENTION), ("max_former_tiny", dict(ATTENTION, neuron="relu")),
    ("ms_qkformer_cifar10", SMALL_T2), ("max_resnet18_cifar10", dict(widths=(16, 32, 64), T=2)),
    ("max_former_10_384", SMALL_T2), ("max_former_dvsgesture", EVENT_SMALL),
])
def test_spikes_saved_as_bytes_change_no_bit_and_save_memory(name, overrides, monkeypatch):
    """The whole model with spikes kept as bytes (convolutions and attention products) and membranes
    rebuilt after BN gives the logits, gradients and BN statistics of the plain layers bit
    for bit, and autograd keeps less; the ANN twin (ReLU, nothing binary) is left alone."""
    torch.manual_seed(0)
    model = create_model(name, **overrides)
    size = 2 * model.stride
    x = torch.rand(2, 2, 2, size, size) * 3 if model.is_event else torch.rand(2, 3, size, size) * 3

    def run() -> list[torch.Tensor]:
        model.zero_grad()
        y = model(x)
        y.square().sum().backward()
        return [y.detach(), *(p.grad for p in model.parameters()), *model.buffers()]

    lean, lean_bytes = run(), kernels.saved_bytes(model, x)
    monkeypatch.setattr(maxformer, "spike_conv", lambda conv, z: conv(z))
    monkeypatch.setattr(maxformer, "saved_as_bytes", lambda *tensors: contextlib.nullcontext())
    floats, floats_bytes = run(), kernels.saved_bytes(model, x)
    model.set_lean(False)
    plain, plain_bytes = run(), kernels.saved_bytes(model, x)
    assert all(torch.equal(a, b) for a, b in zip(lean, plain))
    assert all(torch.equal(a, b) for a, b in zip(floats, plain))
    if overrides.get("neuron") == "relu":
        assert lean_bytes == floats_bytes == plain_bytes
    else:
        assert lean_bytes < floats_bytes < 0.97 * plain_bytes and lean_bytes < 0.9 * plain_bytes


@pytest.mark.parametrize("name, overrides", [
    ("max_former_tiny", {}), ("max_former_tiny", ATTENTION), ("ms_qkformer_cifar10", SMALL_T2),
    ("max_resnet18_cifar10", dict(widths=(16, 32, 64), T=2)), ("max_former_dvsgesture", EVENT_SMALL),
])
def test_a_training_forward_frees_every_spike_and_norm_output(name, overrides):
    """Once a training forward has returned, a neuron's spikes or a BN output is still in memory only
    if autograd saved it as it is (the classifier's input, a Max-ResNet shortcut convolution's
    input): every other reader keeps spikes as bytes, and a membrane rebuilt after a BN needs only the
    BN input. A saved-tensor hook that held on to the float tensor (as one once did, through its
    closure) fails this."""
    torch.manual_seed(0)
    model = create_model(name, **overrides).train()
    x = torch.rand(2, 2, 2, 32, 32) if model.is_event else torch.rand(2, 3, 2 * model.stride, 2 * model.stride)
    outputs: dict[str, tuple[StorageWeakRef, int]] = {}
    saved_as_is: set[int] = set()

    def remember(name: str) -> Callable:
        def hook(module: torch.nn.Module, args: tuple, out: torch.Tensor) -> None:
            outputs[name] = StorageWeakRef(out.untyped_storage()), out.untyped_storage().data_ptr()
        return hook

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved_as_is.add(t.untyped_storage().data_ptr())
        return t

    for module_name, module in model.named_modules():
        if isinstance(module, (neurons.Neuron, torch.nn.modules.batchnorm._BatchNorm)):
            module.register_forward_hook(remember(module_name))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = model(x)
    assert len(outputs) > 10 and y.grad_fn is not None
    assert [n for n, (ref, address) in outputs.items() if not ref.expired() and address not in saved_as_is] == []


def test_ann_twin_keeps_real_valued_inputs_in_float(monkeypatch):
    """ReLU outputs are not binary: the twin's convolutions must not go through bytes."""
    ann = create_model("max_former_tiny_ann")
    x = torch.rand(2, 2, 24, 24) * 3
    convolved = []
    monkeypatch.setattr(maxformer, "spike_conv", lambda conv, z: convolved.append(z) or conv(z))
    y = ann(x)
    assert convolved == []
    create_model("max_former_tiny")(x)  # the spiking twin does
    assert len(convolved) > 10
    assert y.grad_fn is not None and torch.isfinite(y).all()


def test_models_expose_what_the_tools_need():
    """``is_event``, ``named_blocks`` in forward order and ``stage_of`` for every model family."""
    former = create_model("max_former_cifar10")
    assert not former.is_event and create_model("max_former_dvsgesture").is_event
    names = [n for n, _ in former.named_blocks()]
    assert names == ["patch_embed1", "stage1.0", "patch_embed2", "stage2.0", "patch_embed3", "stage3.0", "stage3.1"]
    modules = dict(former.named_modules())
    assert all(modules[n] is m for n, m in former.named_blocks())
    assert former.stage_of("patch_embed2.max_embed1.embed_conv") == ("2", "embedding")
    assert former.stage_of("stage3.1.attn.q_conv") == ("3", "mixer")
    assert former.stage_of("stage2.0.mixer.conv") == ("2", "mixer")
    assert former.stage_of("stage1.0.mlp.fc1_conv") == ("1", "mlp")
    assert former.stage_of("head") == ("head", "classifier")
    assert former.stage_of("head_lif") == ("-", "other")
    resnet = create_model("max_resnet18_2222_cifar10")
    assert [n for n, _ in resnet.named_blocks()][:3] == ["bn1", "layer1.0", "layer1.1"]
    assert [n for n, _ in resnet.named_blocks()][-1] == "layer4.1"
    assert resnet.stage_of("conv1") == ("stem", "embedding")
    assert resnet.stage_of("layer4.0.downsample.1") == ("4", "block")
    assert resnet.stage_of("fc1") == ("head", "classifier")


def test_attention_products_are_named_modules_without_state():
    ssa = create_model("max_former_cifar10").stage3[0].attn
    qk = create_model("ms_qkformer_cifar10").stage1[0].attn
    for module, per_element in ((ssa.kv_product, 48), (ssa.qkv_product, 48), (qk.q_sum, 1), (qk.mask_product, 12)):
        assert isinstance(module, maxformer.SpikeProduct) and module.macs_per_element == per_element
        assert not list(module.state_dict())
    q, k, v = (torch.rand(1, 1, 2, 4, 3) > 0.5).float().unbind(0)[0], torch.rand(1, 2, 4, 3), torch.rand(1, 2, 4, 3)
    assert torch.equal(ssa.qkv_product(q, ssa.kv_product(k, v)), q @ (k.transpose(-2, -1) @ v))


def test_fuse_does_not_depend_on_attribute_order():
    """Pairs come from ``conv_bn_pairs``: a module that assigns its BN before its conv still fuses."""
    model = lively(create_model("max_former_tiny")).eval()
    embed = model.patch_embed1
    embed.proj_bn, embed.proj_conv = embed.proj_bn, embed.proj_conv  # re-registered: bn now first
    embed.register_module("proj_conv", embed._modules.pop("proj_conv"))
    assert list(embed._modules).index("proj_bn") < list(embed._modules).index("proj_conv")
    x = torch.rand(2, 2, 24, 24) * 3
    with torch.no_grad():
        before = model(x)
        after = model.fuse()(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(after, varied(before), rtol=0, atol=1e-5)


@pytest.mark.parametrize("overrides, match", [
    (dict(T=-1), "T must be a positive integer, got -1"),
    (dict(T=0), "T must be a positive integer"),
    (dict(width=0), "width must be a positive integer"),
    (dict(num_classes=0), "num_classes must be a positive integer"),
    (dict(img_size=2.5), "img_size must be a positive integer"),
    (dict(dims=(16, -32, 64)), r"dims\[1\] must be a positive integer"),
    (dict(mlp_ratio=0), "mlp_ratio must be a positive number"),
    (dict(neuron="plif"), "unknown neuron kind 'plif'"),
    (dict(tau=0.5), "tau must be >= 1"),
    (dict(depthz=3), "unknown override"),
])
def test_bad_overrides_raise_clear_errors(overrides, match):
    with pytest.raises(ValueError, match=match):
        create_model("max_former_cifar10", **overrides)


def test_model_name_typos_get_suggestions():
    with pytest.raises(ValueError, match="did you mean 'max_former_cifar10'"):
        create_model("max_fromer_cifar10")
    with pytest.raises(ValueError, match="width applies to Max-Former"):
        create_model("max_resnet18_cifar10", width=64)


@pytest.mark.parametrize("spec, match", [
    ("embed=orig,max", "one entry per stage"),
    ("mixer=foo", "one entry per stage"),
    ("mixer=id,foo,ssa", "unknown token mixer 'foo'"),
    ("embedd=", "bad spec item 'embedd='"),
    ("embed=", "needs comma-separated values"),
    ("depth=1,x,1", "depth takes comma-separated integers"),
    ("heads=many", "heads takes a number"),
    ("dim=16,32,64,128 depth=1,1,1,1 embed=orig,max,max,max mixer=id,id,id,id", "1 to 3 stages"),
])
def test_bad_spec_strings_raise_clear_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        create_model("max_former_cifar10", spec=spec)


def test_model_config_rebuilds_the_same_function_through_json():
    torch.manual_seed(0)
    model = create_model("max_former_tiny_ann", spec="mixer=dwc5,ssa,dwc3", T=3, width=32).eval()
    cfg = json.loads(json.dumps(model_config(model)))
    assert cfg["name"] == "max_former_tiny_ann" and cfg["spec"] == "mixer=dwc5,ssa,dwc3"
    assert cfg["overrides"]["T"] == 3 and cfg["overrides"]["dims"] == [8, 16, 32]
    assert cfg["overrides"]["neuron"] == "relu"
    again = create_model(cfg["name"], spec=cfg["spec"], **cfg["overrides"]).eval()
    again.load_state_dict(model.state_dict())
    x = torch.rand(2, 2, 24, 24)
    assert torch.equal(model(x), again(x)) and again.cfg == model.cfg
    with pytest.raises(ValueError, match="no config record"):
        model_config(torch.nn.Linear(2, 2))


def save_ours(model, path: Path, with_config: bool = True) -> Path:
    ckpt = {"format": "maxformer-train/1", "model": model.state_dict(), "epoch": 3}
    if with_config:
        ckpt["model_config"] = model_config(model)
    torch.save(ckpt, path)
    return path


def test_read_checkpoint_tells_corrupt_files_from_pickled_ones(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "random.pth").write_bytes(torch.randint(0, 256, (4000,), generator=torch.Generator().manual_seed(0),
                                                        dtype=torch.uint8).numpy().tobytes())
    good = save_ours(create_model("max_former_tiny"), tmp_path / "good.pth")
    (tmp_path / "truncated.pth").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for name in ("empty", "random", "truncated"):
        with pytest.raises(CheckpointError, match=f"{name}.pth is corrupt or not a checkpoint"):
            read_checkpoint(tmp_path / f"{name}.pth")
    torch.save({"model": {}, "args": argparse.Namespace(lr=1e-3)}, tmp_path / "pickled.pth")
    with pytest.raises(CheckpointError, match="--allow-pickle"):
        read_checkpoint(tmp_path / "pickled.pth")
    assert read_checkpoint(tmp_path / "pickled.pth", allow_pickle=True)["args"].lr == 1e-3
    assert read_checkpoint(good)["epoch"] == 3
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        read_checkpoint(tmp_path / "nope.pth")


def test_load_model_builds_ours_from_its_config_and_refuses_contradictions(tmp_path):
    torch.manual_seed(0)
    model = lively(create_model("max_former_tiny", spec="embed=orig,avg,avg", T=8)).eval()
    path = save_ours(model, tmp_path / "best.pth")
    loaded = load_model(path).eval()
    x = torch.rand(2, 2, 24, 24) * 3
    assert loaded.cfg.T == 8 and loaded.cfg.embeds == ("orig", "avg", "avg")
    assert torch.equal(loaded(x), varied(model(x)))
    assert load_model(path, name="max_former_tiny", T=8, neuron_backend="torch").cfg.neuron_backend == "torch"
    for kwargs, match in ((dict(spec="embed=orig,max,max"), "embeds=\\['orig', 'avg', 'avg'\\], not embeds="),
                          (dict(T=4), "T=8, not T=4"), (dict(name="max_former_cifar10"), "not 'max_former_cifar10'")):
        with pytest.raises(CheckpointMismatchError, match=match):
            load_model(path, **kwargs)


def test_load_model_needs_a_name_for_files_without_config(tmp_path):
    path = LAYOUTS[[p.stem for p in LAYOUTS].index("max_former_cifar10")]
    file = tmp_path / "released.pth"
    torch.save({"model": random_official_state_dict(path)}, file)
    with pytest.raises(ValueError, match="name the model"):
        load_model(file)
    assert load_model(file, name="max_former_cifar10").cfg.num_classes == 10
    with pytest.raises(CheckpointMismatchError, match="head.weight"):
        load_model(file, name="max_former_cifar100")
    old = save_ours(create_model("max_former_tiny"), tmp_path / "old.pth", with_config=False)
    assert load_model(old, name="max_former_tiny").cfg.T == 4


def test_calibrate_batchnorm_sets_running_statistics_and_eval_mode():
    torch.manual_seed(0)
    model = create_model("max_former_tiny")
    x = torch.rand(4, 2, 24, 24) * 3
    out = maxformer.calibrate_batchnorm(model, [x])
    bn = model.patch_embed1.proj_bn
    assert out is model and not model.training and bn.momentum == 0.1
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
