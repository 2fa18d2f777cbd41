"""The authors' set-up, transcribed: what bench_models.py measures our models against, and what
tests/test_equivalence.py checks our models' functions against.

Two parts, both written from docs/reference/models.md and the facts of the authors' code:

- :class:`TorchLoopLIF`: spikingjelly 0.0.0.0.12's ``MultiStepLIFNode`` with its ``torch`` backend
  (the authors' CPU neuron: tau 2, hard reset to 0, detached reset, sigmoid surrogate alpha 4). It
  runs the single-step neuron T times under plain autograd, so every step's graph stays alive for the
  backward: the surrogate keeps its input ``H - threshold``, the reset ``V = (1 - S) * H + S * 0``
  keeps ``1 - S``, and the neuron itself keeps the membrane sequence after reset (``v_seq``, made by
  concatenating the steps) as an attribute until the state is reset. That is three float tensors
  the size of the input per neuron, where spikingjelly 2.0's CPU ``LIFNode`` keeps two.
- :class:`Ref`: the authors' model flow, literally: convolutions and batch norms on
  ``flatten(0, 1)`` frames, autograd's own max-pool, one neuron call per use; the weights are looked up
  by the authors' state-dict keys. :class:`AuthorsNet` makes it a trainable module (parameters under
  the authors' names, batch statistics in training, the static image repeated T times as their code
  does, ``reset()`` in place of ``functional.reset_net``).

Neither is spikingjelly's code; ``tests/test_bench.py`` checks that the neuron computes what
spikingjelly 2.0's ``LIFNode`` computes, and tests/test_equivalence.py that our models compute what
:class:`Ref` computes.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "reference"

# (input, threshold) -> spikes: the neuron that Ref runs at each use.
NeuronCall = Callable[[torch.Tensor, float], torch.Tensor]


class SigmoidSpike(torch.autograd.Function):
    """Heaviside forward, sigmoid-surrogate backward (alpha 4), as 0.0.0.0.12's ``surrogate.Sigmoid``:
    keeps its input ``x = H - threshold`` and, in the backward, recomputes ``sigmoid(alpha x)`` from it."""

    alpha = 4.0

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        s = (x * SigmoidSpike.alpha).sigmoid()
        return grad * (1.0 - s) * s * SigmoidSpike.alpha


class TorchLoopLIF:
    """spikingjelly 0.0.0.0.12's ``MultiStepLIFNode(tau=2, detach_reset=True, backend='torch')``.

    Calling it on ``x`` ``[T, ...]`` runs the single-step LIF T times under autograd (charge
    ``H = V + (X - V) / tau``, fire on ``H - threshold >= 0``, hard reset with the spike detached) and
    returns the spikes concatenated over T. Like the original it keeps the membrane after each reset,
    concatenated (``v_seq``), and the last one (``v``) until :meth:`reset`; the membrane starts at the
    number 0.
    """

    def __init__(self, v_threshold: float = 1.0, tau: float = 2.0) -> None:
        self.v_threshold, self.tau = v_threshold, tau
        self.v: torch.Tensor | float = 0.0
        self.v_seq: torch.Tensor | None = None

    def __call__(self, x_seq: torch.Tensor) -> torch.Tensor:
        spikes, membranes = [], []
        for x in x_seq:
            h = self.v + (x - self.v) / self.tau
            spike = SigmoidSpike.apply(h - self.v_threshold)
            fired = spike.detach()
            self.v = (1.0 - fired) * h + fired * 0.0
            spikes.append(spike.unsqueeze(0))
            membranes.append(self.v.unsqueeze(0))
        self.v_seq = torch.cat(membranes)
        return torch.cat(spikes)

    def reset(self) -> None:
        """Back to the resting state, freeing what the last call kept (``functional.reset_net``)."""
        self.v, self.v_seq = 0.0, None


class Ref:
    """The authors' operations on ``[T, B, C, H, W]``, weights looked up by their state-dict keys.

    ``neuron(x, threshold)`` runs one neuron use (a fresh multi-step LIF each time). ``training``:
    batch norms use batch statistics and update the running buffers in ``sd`` (momentum 0.1), as
    ``nn.BatchNorm`` does in training. ``where`` names the embedding or block running now (an
    official key prefix such as ``stage1.0.mlp``), for ``bench/saved_account.py``.
    """

    def __init__(self, sd: dict[str, torch.Tensor], neuron: NeuronCall, training: bool = False) -> None:
        self.sd, self.neuron, self.training = sd, neuron, training
        self.where = ""

    @contextlib.contextmanager
    def scope(self, name: str) -> Iterator[None]:
        """Inside, :attr:`where` is ``name``."""
        outer, self.where = self.where, name
        try:
            yield
        finally:
            self.where = outer

    def lif(self, x: torch.Tensor, threshold: float = 1.0) -> torch.Tensor:
        return self.neuron(x, threshold)

    def conv(self, name: str, x: torch.Tensor, stride: int = 1, groups: int = 1) -> torch.Tensor:
        T, B = x.shape[:2]
        w = self.sd[f"{name}.weight"]
        y = F.conv2d(x.flatten(0, 1), w, self.sd.get(f"{name}.bias"), stride, w.shape[-1] // 2, groups=groups)
        return y.reshape(T, B, *y.shape[1:])

    def conv1d(self, name: str, x: torch.Tensor) -> torch.Tensor:  # [T, B, C, N]
        T, B = x.shape[:2]
        y = F.conv1d(x.flatten(0, 1), self.sd[f"{name}.weight"], self.sd.get(f"{name}.bias"))
        return y.reshape(T, B, *y.shape[1:])

    def bn(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if self.training and f"{name}.num_batches_tracked" in self.sd:
            self.sd[f"{name}.num_batches_tracked"].add_(1)
        y = F.batch_norm(x.flatten(0, 1), self.sd[f"{name}.running_mean"], self.sd[f"{name}.running_var"],
                         self.sd[f"{name}.weight"], self.sd[f"{name}.bias"], self.training, 0.1, 1e-5)
        return y.reshape(x.shape[:2] + y.shape[1:])

    @staticmethod
    def pool(x: torch.Tensor, kind: str = "max", stride: int = 2) -> torch.Tensor:
        T, B = x.shape[:2]
        x = x.flatten(0, 1)
        y = F.max_pool2d(x, 3, stride, 1) if kind == "max" else F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)
        return y.reshape(T, B, *y.shape[1:])

    def unit(self, prefix: str, x: torch.Tensor, stride: int = 1, use_lif: bool = True, pool: bool = False):
        """docs/reference/models.md ``Unit``: ``[LIF] -> Conv -> BN -> [MaxPool 3/2/1]``."""
        y = self.bn(f"{prefix}.embed_bn", self.conv(f"{prefix}.embed_conv", self.lif(x) if use_lif else x, stride))
        return self.pool(y) if pool else y

    def stem(self, prefix: str, x: torch.Tensor) -> torch.Tensor:
        return self.bn(f"{prefix}.proj_bn", self.conv(f"{prefix}.proj_conv", x))

    def mlp(self, p: str, x: torch.Tensor) -> torch.Tensor:
        with self.scope(p):
            identity = x
            h = self.bn(f"{p}.fc1_bn", self.conv(f"{p}.fc1_conv", self.lif(x)))
            if h.shape == x.shape:
                h = h + identity
                identity = h
            return self.bn(f"{p}.fc2_bn", self.conv(f"{p}.fc2_conv", self.lif(h))) + identity

    def dwc(self, p: str, x: torch.Tensor, conv: str = "conv") -> torch.Tensor:
        with self.scope(p):
            return x + self.bn(f"{p}.{conv}_bn", self.conv(f"{p}.{conv}", self.lif(x), groups=x.shape[2]))

    def ssa(self, p: str, x: torch.Tensor, heads: int) -> torch.Tensor:
        with self.scope(p):
            T, B, C, H, W = x.shape
            s = self.lif(x).reshape(T, B, C, H * W)
            q, k, v = (self.lif(self.bn(f"{p}.{n}_bn", self.conv1d(f"{p}.{n}_conv", s)))
                       .transpose(-1, -2).reshape(T, B, H * W, heads, C // heads).permute(0, 1, 3, 2, 4)
                       for n in "qkv")
            y = (q @ (k.transpose(-2, -1) @ v)) * 0.125
            y = self.lif(y.transpose(3, 4).reshape(T, B, C, H * W), threshold=0.5)
            return self.bn(f"{p}.proj_bn", self.conv1d(f"{p}.proj_conv", y)).reshape(T, B, C, H, W) + x

    def token_qk(self, p: str, x: torch.Tensor, heads: int) -> torch.Tensor:
        with self.scope(p):
            T, B, C, H, W = x.shape
            s = self.lif(x).reshape(T, B, C, H * W)
            q = self.lif(self.bn(f"{p}.q_bn", self.conv1d(f"{p}.q_conv", s))).reshape(T, B, heads, C // heads, H * W)
            k = self.lif(self.bn(f"{p}.k_bn", self.conv1d(f"{p}.k_conv", s))).reshape(T, B, heads, C // heads, H * W)
            mask = self.lif(q.sum(dim=3, keepdim=True), threshold=0.5)
            y = (mask * k).reshape(T, B, C, H * W)
            return self.bn(f"{p}.proj_bn", self.conv1d(f"{p}.proj_conv", y)).reshape(T, B, C, H, W) + x

    def head(self, x: torch.Tensor, name: str = "head") -> torch.Tensor:
        with self.scope("head"):
            x = self.lif(x.flatten(3).mean(3))
            return F.linear(x, self.sd[f"{name}.weight"], self.sd[f"{name}.bias"]).mean(0)


def embed_orig(r: Ref, x):  # Embed_Orig
    with r.scope("patch_embed1"):
        m = r.stem("patch_embed1", x)
        return r.unit("patch_embed1.embed1", m) + r.unit("patch_embed1.embed2", m)


def embed_max(r: Ref, p: str, x):  # Embed_Max: main path and shortcut both read the first LIF's spikes
    with r.scope(p):
        s = r.lif(x)
        main = r.unit(f"{p}.embed1", r.unit(f"{p}.max_embed1", s, use_lif=False, pool=True))
        return main + r.unit(f"{p}.max_embed2", s, use_lif=False, pool=True)


def embed_1max(r: Ref, p: str, x):  # Embed_1Max
    with r.scope(p):
        s = r.lif(x)
        main = r.unit(f"{p}.max_embed1", r.unit(f"{p}.embed1", s, use_lif=False), pool=True)
        return main + r.unit(f"{p}.embed2", s, stride=2, use_lif=False)


def embed_max_plus(r: Ref, x):  # Embed_Max_plus
    p = "patch_embed1"
    with r.scope(p):
        u1 = r.unit(f"{p}.max_embed1", r.stem(p, x), pool=True)
        u2_spikes = r.lif(u1)
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


def tiny_max_former(r: Ref, x):
    """``max_former_tiny`` (ours, not the authors'): the CIFAR flow with DWC-3 mixers in all three stages."""
    x = embed_orig(r, x)
    x = r.mlp("stage1.0.mlp", r.dwc("stage1.0.mixer", x))
    for stage in (2, 3):
        x = embed_max(r, f"patch_embed{stage}", x)
        x = r.mlp(f"stage{stage}.0.mlp", r.dwc(f"stage{stage}.0.mixer", x))
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
    with r.scope(p):
        u1 = r.unit(f"{p}.embed1", x, stride=2, use_lif=False)
        s = r.lif(u1)
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
    with r.scope(p):
        s = r.lif(r.pool(r.bn(f"{p}.proj_bn", r.conv(f"{p}.proj_conv", x))))
        y = r.lif(r.pool(r.bn(f"{p}.proj_bn1", r.conv(f"{p}.proj_conv1", s))))
        x = r.bn(f"{p}.proj_bn2", r.conv(f"{p}.proj_conv2", y)) + r.bn(f"{p}.rpe_bn", r.conv(f"{p}.rpe_conv", s, 2))
    x = r.mlp("stage1.0.mlp", r.token_qk("stage1.0.attn", x, heads))
    for stage, depth, mixer in ((2, 2, r.token_qk), (3, 7, r.ssa)):
        p = f"patch_embed{stage}"
        with r.scope(p):
            s = r.lif(x)
            y = r.lif(r.pool(r.bn(f"{p}.proj3_bn", r.conv(f"{p}.proj3_conv", s))))
            x = r.bn(f"{p}.proj4_bn", r.conv(f"{p}.proj4_conv", y)) + \
                r.bn(f"{p}.proj_res_bn", r.conv(f"{p}.proj_res_conv", s, 2))
        for i in range(depth):
            x = r.mlp(f"stage{stage}.{i}.mlp", mixer(f"stage{stage}.{i}.attn", x, heads))
    return r.head(x)


def max_resnet18(r: Ref, x):
    with r.scope("stem"):
        x = r.bn("bn1", r.conv("conv1", x))
    for layer, blocks in ((1, 3), (2, 3), (3, 2)):
        for j in range(blocks):
            p = f"layer{layer}.{j}"
            with r.scope(p):
                pool = layer > 1 and j == 0
                y = r.bn(f"{p}.bn1", r.conv(f"{p}.conv1", r.lif(x)))
                y = r.pool(y) if pool else y
                y = r.bn(f"{p}.bn2", r.conv(f"{p}.conv2", r.lif(y)))
                if f"{p}.downsample.1.weight" in r.sd:
                    T, B = x.shape[:2]
                    w = r.sd[f"{p}.downsample.1.weight"]
                    sc = F.conv2d(x.flatten(0, 1), w, None, 2 if pool else 1).reshape(T, B, *y.shape[2:])
                    sc = r.bn(f"{p}.downsample.2", sc)
                else:
                    sc = x
                x = y + sc
    with r.scope("head"):
        x = r.lif(x).mean((3, 4))
        return F.linear(x, r.sd["fc1.weight"], r.sd["fc1.bias"]).mean(0)


# zoo name -> the authors' forward of that model (a function of a Ref and time-first input)
FLOWS: dict[str, Callable[[Ref, torch.Tensor], torch.Tensor]] = {
    **{f"max_former_{d}": cifar_max_former for d in ("cifar10", "cifar100")},
    **{f"max_former_{d}": event_max_former for d in ("cifar10dvs", "dvsgesture")},
    **{f"ms_qkformer_{d}": cifar_ms_qkformer for d in ("cifar10", "cifar100")},
    **{f"ms_qkformer_{d}": event_ms_qkformer for d in ("cifar10dvs", "dvsgesture")},
    **{f"max_former_10_{d}": imagenet_max_former for d in (384, 512, 768)},
    **{f"ms_qkformer_10_{d}": imagenet_ms_qkformer for d in (384, 512, 768)},
    **{f"max_resnet18_{d}": max_resnet18 for d in ("cifar10", "cifar100")},
    "max_former_tiny": tiny_max_former,
}


def official_layout(name: str) -> dict[str, list[int]]:
    """The authors' state-dict layout of zoo model ``name`` (key -> shape, in their order)."""
    return json.loads((REFERENCE / f"{name}.json").read_text())["state_dict"]


def layout_of(name: str, model: nn.Module) -> dict[str, list[int]]:
    """The authors' layout of ``name`` where tests/reference has one, else ``model``'s own keys
    (ours follow the authors' names; ``max_former_tiny`` has no official counterpart)."""
    if (REFERENCE / f"{name}.json").exists():
        return official_layout(name)
    return {key: list(value.shape) for key, value in model.state_dict().items()}


class AuthorsNet(nn.Module):
    """A trainable :class:`Ref` of zoo model ``name`` with the weights of ``model`` (one of ours, same
    zoo entry), matched to the authors' keys by position (their order is ours).

    Parameters and buffers are registered under the authors' keys with ``.`` written as ``__``.
    Every neuron use is a fresh :class:`TorchLoopLIF` that keeps its state until :meth:`reset`, which
    must be called after each step (after the backward and optimizer step in training), as the
    authors call ``functional.reset_net``. ``cfg`` and ``is_event`` are the model's, so bench
    workloads treat both alike. The authors' code folds nothing, so :meth:`fuse` returns the net itself.
    """

    def __init__(self, name: str, model: nn.Module) -> None:
        super().__init__()
        self.flow, self.cfg, self.is_event = FLOWS[name], model.cfg, model.is_event
        layout = layout_of(name, model)
        ours = model.state_dict()
        if len(ours) != len(layout):
            raise ValueError(f"{name}: {len(ours)} tensors in our model, {len(layout)} in the authors' layout")
        self.keys = list(layout)
        for key, value in zip(self.keys, ours.values()):
            if list(value.shape) != layout[key]:
                raise ValueError(f"{name}: {key} is {layout[key]} in the authors' layout, {list(value.shape)} in ours")
            local = key.replace(".", "__")
            if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
                self.register_buffer(local, value.detach().clone())
            else:
                self.register_parameter(local, nn.Parameter(value.detach().clone()))
        self.neurons: list[TorchLoopLIF] = []
        self.ref: Ref | None = None

    def lif(self, x: torch.Tensor, threshold: float) -> torch.Tensor:
        node = TorchLoopLIF(threshold)
        self.neurons.append(node)
        return node(x)

    @property
    def where(self) -> str:
        """The embedding or block running now (see :class:`Ref`), or ``""``."""
        return "" if self.ref is None else self.ref.where

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``x`` (``[B, C, H, W]`` images, repeated T times, or ``[B, T, C, H, W]`` frames)."""
        tensors = dict(self.named_parameters())
        tensors.update(self.named_buffers())
        sd = {key: tensors[key.replace(".", "__")] for key in self.keys}
        x = x.transpose(0, 1) if self.is_event else x.unsqueeze(0).repeat(self.cfg.T, 1, 1, 1, 1)
        self.ref = Ref(sd, self.lif, training=self.training)
        try:
            return self.flow(self.ref, x)
        finally:
            self.ref = None

    def reset(self) -> None:
        """Free every neuron's kept state (``functional.reset_net``)."""
        for node in self.neurons:
            node.reset()
        self.neurons.clear()

    def fuse(self) -> "AuthorsNet":
        return self
