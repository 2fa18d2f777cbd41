"""Our models compute the authors' functions exactly.

Each test transcribes docs/reference/models.md literally, as a second and independent implementation: functional
convolutions and eval-mode batch norms read straight from a state dict in the authors' key layout,
and spikingjelly's multi-step ``LIFNode`` (the neuron the authors use) with one neuron per use (no
shared spikes, no time folding tricks). The same random weights and BN statistics go into our model
through ``load_official``; logits must agree to float rounding.
"""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from checkpoints import load_official
from zoo import create_model

sj_neuron = pytest.importorskip("spikingjelly.activation_based.neuron", reason="spikingjelly (requirements.txt) is not installed")
REFERENCE = Path(__file__).parent / "reference"


def lif(x: torch.Tensor, threshold: float = 1.0) -> torch.Tensor:
    node = sj_neuron.LIFNode(tau=2.0, v_threshold=threshold, v_reset=0.0, detach_reset=True, step_mode="m")
    return node(x)


class Ref:
    """Literal docs/reference/models.md operations on ``[T, B, C, H, W]`` with weights looked up by official key."""

    def __init__(self, sd: dict[str, torch.Tensor]) -> None:
        self.sd = sd

    def conv(self, name: str, x: torch.Tensor, stride: int = 1, groups: int = 1) -> torch.Tensor:
        T, B = x.shape[:2]
        w = self.sd[f"{name}.weight"]
        y = F.conv2d(x.reshape(T * B, *x.shape[2:]), w, self.sd.get(f"{name}.bias"), stride, w.shape[-1] // 2,
                     groups=groups)
        return y.reshape(T, B, *y.shape[1:])

    def conv1d(self, name: str, x: torch.Tensor) -> torch.Tensor:  # [T, B, C, N]
        T, B = x.shape[:2]
        y = F.conv1d(x.reshape(T * B, *x.shape[2:]), self.sd[f"{name}.weight"], self.sd.get(f"{name}.bias"))
        return y.reshape(T, B, *y.shape[1:])

    def bn(self, name: str, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        y = F.batch_norm(x.reshape(T * B, *x.shape[2:]), self.sd[f"{name}.running_mean"],
                         self.sd[f"{name}.running_var"], self.sd[f"{name}.weight"], self.sd[f"{name}.bias"],
                         False, 0.0, 1e-5)
        return y.reshape(x.shape[:2] + y.shape[1:])

    @staticmethod
    def pool(x: torch.Tensor, kind: str = "max", stride: int = 2) -> torch.Tensor:
        T, B = x.shape[:2]
        x = x.reshape(T * B, *x.shape[2:])
        y = F.max_pool2d(x, 3, stride, 1) if kind == "max" else F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)
        return y.reshape(T, B, *y.shape[1:])

    def unit(self, prefix: str, x: torch.Tensor, stride: int = 1, use_lif: bool = True, pool: bool = False):
        """docs/reference/models.md ``Unit``: ``[LIF] -> Conv -> BN -> [MaxPool 3/2/1]``."""
        y = self.bn(f"{prefix}.embed_bn", self.conv(f"{prefix}.embed_conv", lif(x) if use_lif else x, stride))
        return self.pool(y) if pool else y

    def stem(self, prefix: str, x: torch.Tensor) -> torch.Tensor:
        return self.bn(f"{prefix}.proj_bn", self.conv(f"{prefix}.proj_conv", x))

    def mlp(self, p: str, x: torch.Tensor) -> torch.Tensor:
        identity = x
        h = self.bn(f"{p}.fc1_bn", self.conv(f"{p}.fc1_conv", lif(x)))
        if h.shape == x.shape:
            h = h + identity
            identity = h
        return self.bn(f"{p}.fc2_bn", self.conv(f"{p}.fc2_conv", lif(h))) + identity

    def dwc(self, p: str, x: torch.Tensor, conv: str = "conv") -> torch.Tensor:
        return x + self.bn(f"{p}.{conv}_bn", self.conv(f"{p}.{conv}", lif(x), groups=x.shape[2]))

    def ssa(self, p: str, x: torch.Tensor, heads: int) -> torch.Tensor:
        T, B, C, H, W = x.shape
        s = lif(x).reshape(T, B, C, H * W)
        q, k, v = (lif(self.bn(f"{p}.{n}_bn", self.conv1d(f"{p}.{n}_conv", s)))
                   .transpose(-1, -2).reshape(T, B, H * W, heads, C // heads).permute(0, 1, 3, 2, 4)
                   for n in "qkv")
        y = (q @ (k.transpose(-2, -1) @ v)) * 0.125
        y = lif(y.transpose(3, 4).reshape(T, B, C, H * W), threshold=0.5)
        return self.bn(f"{p}.proj_bn", self.conv1d(f"{p}.proj_conv", y)).reshape(T, B, C, H, W) + x

    def token_qk(self, p: str, x: torch.Tensor, heads: int) -> torch.Tensor:
        T, B, C, H, W = x.shape
        s = lif(x).reshape(T, B, C, H * W)
        q = lif(self.bn(f"{p}.q_bn", self.conv1d(f"{p}.q_conv", s))).reshape(T, B, heads, C // heads, H * W)
        k = lif(self.bn(f"{p}.k_bn", self.conv1d(f"{p}.k_conv", s))).reshape(T, B, heads, C // heads, H * W)
        mask = lif(q.sum(dim=3, keepdim=True), threshold=0.5)
        y = (mask * k).reshape(T, B, C, H * W)
        return self.bn(f"{p}.proj_bn", self.conv1d(f"{p}.proj_conv", y)).reshape(T, B, C, H, W) + x

    def head(self, x: torch.Tensor, name: str = "head") -> torch.Tensor:
        x = lif(x.flatten(3).mean(3))
        return F.linear(x, self.sd[f"{name}.weight"], self.sd[f"{name}.bias"]).mean(0)


def embed_orig(r: Ref, x):  # Embed_Orig
    m = r.stem("patch_embed1", x)
    return r.unit("patch_embed1.embed1", m) + r.unit("patch_embed1.embed2", m)


def embed_max(r: Ref, p: str, x):  # Embed_Max: main path and shortcut both read the first LIF's spikes
    s = lif(x)
    main = r.unit(f"{p}.embed1", r.unit(f"{p}.max_embed1", s, use_lif=False, pool=True))
    return main + r.unit(f"{p}.max_embed2", s, use_lif=False, pool=True)


def embed_1max(r: Ref, p: str, x):  # Embed_1Max
    s = lif(x)
    main = r.unit(f"{p}.max_embed1", r.unit(f"{p}.embed1", s, use_lif=False), pool=True)
    return main + r.unit(f"{p}.embed2", s, stride=2, use_lif=False)


def embed_max_plus(r: Ref, x):  # Embed_Max_plus
    p = "patch_embed1"
    u1 = r.unit(f"{p}.max_embed1", r.stem(p, x), pool=True)
    u2_spikes = lif(u1)
    main = r.unit(f"{p}.max_embed3", r.unit(f"{p}.max_embed2", u2_spikes, use_lif=False, pool=True), pool=True)
    return main + r.unit(f"{p}.embed1", u2_spikes, stride=4, use_lif=False)


def cifar_max_former(r: Ref, x):
    x = embed_orig(r, x)
    x = r.mlp("stage1.0.mlp", x)
    x = embed_max(r, "patch_embed2", x)
    x = r.mlp("stage2.0.mlp", r.dwc("stage2.0.mixer", x))
    x = embed_max(r, "patch_embed3", x)
    for i in range(2):
        x = r.mlp(f"stage3.{i}.mlp", r.ssa(f"stage3.{i}.attn", x, heads=8))
    return r.head(x)


def event_max_former(r: Ref, x):
    x = embed_max_plus(r, x)
    x = r.mlp("stage1.0.mlp", r.dwc("stage1.0.mixer", x))
    x = embed_max(r, "patch_embed2", x)
    return r.head(r.mlp("stage2.0.mlp", r.ssa("stage2.0.attn", x, heads=16)))


def cifar_ms_qkformer(r: Ref, x):
    x = r.mlp("stage1.0.mlp", r.token_qk("stage1.0.attn", embed_orig(r, x), heads=8))
    x = r.mlp("stage2.0.mlp", r.token_qk("stage2.0.attn", embed_1max(r, "patch_embed2", x), heads=8))
    x = embed_1max(r, "patch_embed3", x)
    for i in range(2):
        x = r.mlp(f"stage3.{i}.mlp", r.ssa(f"stage3.{i}.attn", x, heads=8))
    return r.head(x)


def event_ms_qkformer(r: Ref, x):
    x = r.mlp("stage1.0.mlp", r.token_qk("stage1.0.attn", embed_max_plus(r, x), heads=16))
    x = embed_1max(r, "patch_embed2", x)
    return r.head(r.mlp("stage2.0.mlp", r.ssa("stage2.0.attn", x, heads=16)))


def imagenet_max_former(r: Ref, x, heads: int = 6):
    p = "patch_embed1"
    u1 = r.unit(f"{p}.embed1", x, stride=2, use_lif=False)
    s = lif(u1)
    x = r.unit(f"{p}.embed3", r.unit(f"{p}.embed2", s, stride=2, use_lif=False)) + \
        r.unit(f"{p}.embed4", s, stride=2, use_lif=False)
    x = r.mlp("stage1.0.mlp", r.dwc("stage1.0.mixer", x, conv="conv5"))
    x = embed_max(r, "patch_embed2", x)
    for i in range(2):
        x = r.mlp(f"stage2.{i}.mlp", r.dwc(f"stage2.{i}.mixer", x))
    x = embed_max(r, "patch_embed3", x)
    for i in range(7):
        x = r.mlp(f"stage3.{i}.mlp", r.ssa(f"stage3.{i}.attn", x, heads=heads))
    return r.head(x)


def imagenet_ms_qkformer(r: Ref, x, heads: int = 6):
    p = "patch_embed1"
    s = lif(r.pool(r.bn(f"{p}.proj_bn", r.conv(f"{p}.proj_conv", x))))
    y = lif(r.pool(r.bn(f"{p}.proj_bn1", r.conv(f"{p}.proj_conv1", s))))
    x = r.bn(f"{p}.proj_bn2", r.conv(f"{p}.proj_conv2", y)) + r.bn(f"{p}.rpe_bn", r.conv(f"{p}.rpe_conv", s, 2))
    x = r.mlp("stage1.0.mlp", r.token_qk("stage1.0.attn", x, heads))
    for stage, depth, mixer in ((2, 2, r.token_qk), (3, 7, r.ssa)):
        p = f"patch_embed{stage}"
        s = lif(x)
        y = lif(r.pool(r.bn(f"{p}.proj3_bn", r.conv(f"{p}.proj3_conv", s))))
        x = r.bn(f"{p}.proj4_bn", r.conv(f"{p}.proj4_conv", y)) + \
            r.bn(f"{p}.proj_res_bn", r.conv(f"{p}.proj_res_conv", s, 2))
        for i in range(depth):
            x = r.mlp(f"stage{stage}.{i}.mlp", mixer(f"stage{stage}.{i}.attn", x, heads))
    return r.head(x)


def max_resnet18(r: Ref, x):
    x = r.bn("bn1", r.conv("conv1", x))
    for layer, blocks in ((1, 3), (2, 3), (3, 2)):
        for j in range(blocks):
            p = f"layer{layer}.{j}"
            pool = layer > 1 and j == 0
            y = r.bn(f"{p}.bn1", r.conv(f"{p}.conv1", lif(x)))
            y = r.pool(y) if pool else y
            y = r.bn(f"{p}.bn2", r.conv(f"{p}.conv2", lif(y)))
            if f"{p}.downsample.1.weight" in r.sd:
                T, B = x.shape[:2]
                w = r.sd[f"{p}.downsample.1.weight"]
                sc = F.conv2d(x.reshape(T * B, *x.shape[2:]), w, None, 2 if pool else 1).reshape(T, B, *y.shape[2:])
                sc = r.bn(f"{p}.downsample.2", sc)
            else:
                sc = x
            x = y + sc
    x = lif(x).mean((3, 4))
    return F.linear(x, r.sd["fc1.weight"], r.sd["fc1.bias"]).mean(0)


CASES = {
    "max_former_cifar10": (cifar_max_former, (2, 3, 32, 32)),
    "max_former_dvsgesture": (event_max_former, (2, 4, 2, 64, 64)),
    "ms_qkformer_cifar10": (cifar_ms_qkformer, (2, 3, 32, 32)),
    "ms_qkformer_cifar10dvs": (event_ms_qkformer, (2, 4, 2, 64, 64)),
    "max_former_10_384": (imagenet_max_former, (2, 3, 64, 64)),
    "ms_qkformer_10_384": (imagenet_ms_qkformer, (2, 3, 64, 64)),
    "max_resnet18_cifar10": (max_resnet18, (2, 3, 32, 32)),
}


def random_weights(name: str) -> dict[str, torch.Tensor]:
    """Random weights with BN statistics and affine terms that keep neurons firing at useful rates."""
    gen = torch.Generator().manual_seed(1)
    layout = json.loads((REFERENCE / f"{name}.json").read_text())["state_dict"]
    sd = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(0)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=gen) + 0.5
        elif key.endswith(("running_mean", ".bias")):
            sd[key] = 0.1 * torch.randn(shape, generator=gen)
        elif len(shape) == 1:  # BN weight
            sd[key] = 1.0 + 0.5 * torch.rand(shape, generator=gen)
        else:
            fan_in = max(1, torch.Size(shape[1:]).numel())
            sd[key] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
    return sd


@pytest.mark.parametrize("name", sorted(CASES))
def test_model_equals_literal_transcription_of_the_official_model(name):
    """Eval-mode logits of our model equal the literal docs/reference/models.md transcription to 1e-4 relative,
    and the network is not trivially silent (the logits vary across inputs)."""
    ref_forward, shape = CASES[name]
    sd = random_weights(name)
    model = load_official(create_model(name, T=4), sd).eval()
    torch.manual_seed(2)
    x = torch.rand(shape) * 2
    with torch.no_grad():
        ours = model(x)
        x_ref = x.unsqueeze(0).repeat(4, 1, 1, 1, 1) if x.dim() == 4 else x.transpose(0, 1)
        theirs = ref_forward(Ref(sd), x_ref)
    assert ours.std(0).abs().max() > 1e-3, "logits do not depend on the input; the test would be vacuous"
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
