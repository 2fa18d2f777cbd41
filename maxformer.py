"""Max-Former, MS-QKFormer and Max-ResNet: every model of *Spiking Neural Networks Need
High-Frequency Information* (Fang et al., NeurIPS 2025, arXiv 2505.18608): the architecture.

The paper's fix for the low-pass nature of spiking neurons (section 3.1) is two cheap operators:
an extra max-pool in the patch embeddings (section 3.2, "Embed-Max") and depth-wise convolutions
instead of self-attention in the early stages (section 3.3). A model is a stack of stages, each a
patch embedding followed by blocks; a block is a token mixer followed by an S-MLP (Figure 1, Table 1).

Conventions (docs/reference/models.md):
- activations are membrane potentials ``[T, B, C, H, W]`` (time first); every shortcut adds
  real-valued BN outputs ("membrane shortcut"), never spikes;
- convolutions and batch norms run on ``[T*B, C, H, W]`` (time folded into batch, :func:`frames`);
- attribute names follow the authors' checkpoint keys, so their released weights load by name, and
  the order in which a module assigns its layers is the order of the authors' keys.

The model list (names, spec strings, ``create_model``) is zoo.py; reading and loading checkpoints,
checkpoints.py; keeping less memory for the backward, memory.py (one switch, :meth:`SpikingNet.set_lean`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import memory
from kernels import MaxPool, saved_as_bytes, spike_conv
from memory import SpikeSource, is_spikes, remember_norm
from neurons import Neuron, NeuronSpec


# ----------------------------------------------------------------------------- time folding

def fold(x: torch.Tensor) -> torch.Tensor:
    """``[T, B, ...] -> [T*B, ...]``: run a per-frame layer on every time step at once."""
    return x.flatten(0, 1)


def unfold(x: torch.Tensor, T: int) -> torch.Tensor:
    """``[T*B, ...] -> [T, B, ...]``."""
    return x.unflatten(0, (T, -1))


def frames(x: torch.Tensor, conv: nn.Module, bn: nn.Module, pool: nn.Module | None = None) -> torch.Tensor:
    """``conv -> BN [-> pool]`` on every frame of ``x`` ``[T, B, C, ...]`` (time folded into batch for
    the convolution and the BN).

    The one place where the memory plan (memory.py) meets the layers: spikes of a lean model's
    neuron are convolved through ``kernels.spike_conv`` (kept as bytes for the backward, same
    numbers), and a BN output with no pool after it is announced to the neuron that may read it
    (``memory.remember_norm``: that neuron rebuilds its membrane in the backward).
    """
    T = x.shape[0]
    c = spike_conv(conv, fold(x)) if is_spikes(x) else conv(fold(x))
    y = unfold(bn(c) if pool is None else pool(bn(c)), T)
    if pool is None or isinstance(pool, nn.Identity):
        remember_norm(bn, c, y)
    return y


class FoldTime(nn.Module):
    """``[T, B, ...] -> [T*B, ...]`` as a module (first element of Max-ResNet's shortcut)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fold(x)


def make_pool(kind: str | None, stride: int) -> nn.Module:
    """3x3 max- or avg-pool with padding 1 (``count_include_pad=False``), or identity."""
    if kind is None:
        return nn.Identity()
    if kind == "max":
        return MaxPool(stride)
    if kind == "avg":
        return nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    raise ValueError(f"unknown pool {kind!r}; use 'max', 'avg' or None")


def conv_bn(cin: int, cout: int, k: int, s: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    """``Conv2d(k, s, padding k//2, bias=False)`` and the ``BatchNorm2d`` that follows it."""
    return nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout)


class HasConvBN:
    """A module whose convolutions are each followed by a batch norm; ``conv_bn_pairs`` names them
    for :meth:`SpikingNet.fuse` (explicitly, so fusing never depends on attribute order)."""

    def conv_bn_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        raise NotImplementedError


class Unit(nn.Module, HasConvBN):
    """``Conv2d(k, s, p, bias=False) -> BN2d -> [pool 3x3/2]`` on ``[T, B, Cin, H, W]``.

    This is docs/reference/models.md's ``Unit`` without its leading LIF: embeddings own their neurons,
    because a main path and a shortcut often read the same spikes (computed once).
    """

    def __init__(self, cin: int, cout: int, k: int, s: int = 1, pool: str | None = None) -> None:
        super().__init__()
        self.embed_conv, self.embed_bn = conv_bn(cin, cout, k, s)
        self.pool = make_pool(pool, 2)

    def conv_bn_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.embed_conv, self.embed_bn)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return frames(x, self.embed_conv, self.embed_bn, self.pool)


# ----------------------------------------------------------------------------- patch embeddings
# Input membrane [T, B, Cin, H, W] -> output membrane [T, B, D, H/stride, W/stride].
# (docs/reference/models.md, "Patch embeddings", gives each one's layers and the authors' class name.)

class EmbedOrig(nn.Module, HasConvBN):
    """Embed-Orig, stage 1 (``Embed_Orig``, Table 4): stem conv3x3, then ``conv3x3`` main path and
    ``conv1x1`` shortcut on the stem's spikes. Stride 1."""

    stride = 1

    def __init__(self, cin: int, dim: int, neuron: NeuronSpec) -> None:
        super().__init__()
        self.proj_conv, self.proj_bn = conv_bn(cin, dim // 2, 3)
        self.lif = neuron()
        self.embed1 = Unit(dim // 2, dim, 3)
        self.embed2 = Unit(dim // 2, dim, 1)

    def conv_bn_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.proj_conv, self.proj_bn)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.lif(frames(x, self.proj_conv, self.proj_bn))
        return self.embed1(s) + self.embed2(s)


def conv_path_start(cin: int, dim: int, neuron: NeuronSpec) -> tuple[Neuron, Unit, Neuron]:
    """``LIF -> Unit(conv3x3) -> LIF``: how Embed-Orig-later and Embed-1Max begin (as ``lif1``,
    ``embed1``, ``lif2``, their checkpoint keys, assigned in that order)."""
    return neuron(), Unit(cin, dim, 3), neuron()


class EmbedOrigLater(nn.Module):
    """Embed-Orig in stages >= 2 (``Embed_Orig_later``): ``LIF -> Unit -> LIF -> Unit(stride 2)`` plus
    a 1x1/2 ``Unit`` shortcut, both reading the first LIF's spikes. Stride 2 from the convolutions."""

    stride = 2

    def __init__(self, cin: int, dim: int, neuron: NeuronSpec) -> None:
        super().__init__()
        self.lif1, self.embed1, self.lif2 = conv_path_start(cin, dim, neuron)
        self.embed2 = Unit(dim, dim, 3, 2)
        self.embed3 = Unit(cin, dim, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.lif1(x)
        return self.embed2(self.lif2(self.embed1(s))) + self.embed3(s)


class EmbedMax(nn.Module):
    """Embed-Max (``Embed_Max``, section 3.2): as Embed-Orig-later, but a 3x3/2 max-pool after the
    first conv and on the 1x1 shortcut does the downsampling, all convolutions stride 1. Stride 2."""

    stride = 2
    pool = "max"

    def __init__(self, cin: int, dim: int, neuron: NeuronSpec) -> None:
        super().__init__()
        self.lif1 = neuron()
        self.max_embed1 = Unit(cin, dim, 3, pool=self.pool)
        self.lif2 = neuron()
        self.embed1 = Unit(dim, dim, 3)
        self.max_embed2 = Unit(cin, dim, 1, pool=self.pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.lif1(x)
        return self.embed1(self.lif2(self.max_embed1(s))) + self.max_embed2(s)


class EmbedAvg(EmbedMax):
    """Embed-Avg (``Embed_Avg``, the ablation of Table 4): Embed-Max with 3x3/2 average pools."""

    pool = "avg"


class Embed1Max(nn.Module):
    """Embed-1Max (``Embed_1Max``, MS-QKFormer's later stages): ``LIF -> Unit -> LIF -> Unit ->
    max-pool 3x3/2`` plus a 1x1/2 ``Unit`` shortcut from the first LIF's spikes. Stride 2."""

    stride = 2

    def __init__(self, cin: int, dim: int, neuron: NeuronSpec) -> None:
        super().__init__()
        self.lif1, self.embed1, self.lif2 = conv_path_start(cin, dim, neuron)
        self.max_embed1 = Unit(dim, dim, 3, pool="max")
        self.embed2 = Unit(cin, dim, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.lif1(x)
        return self.max_embed1(self.lif2(self.embed1(s))) + self.embed2(s)


class EmbedMaxPlus(nn.Module, HasConvBN):
    """Embed-Max+ (``Embed_Max_plus``, event stage 1): stem to D/8, three conv-BN-maxpool units to
    D/4, D/2, D, and a stride-4 1x1 shortcut from the second unit's spikes. Stride 8: 128x128 event
    frames become 16x16 tokens."""

    stride = 8

    def __init__(self, cin: int, dim: int, neuron: NeuronSpec) -> None:
        super().__init__()
        self.proj_conv, self.proj_bn = conv_bn(cin, dim // 8, 3)
        self.lif1 = neuron()
        self.max_embed1 = Unit(dim // 8, dim // 4, 3, pool="max")
        self.lif2 = neuron()
        self.max_embed2 = Unit(dim // 4, dim // 2, 3, pool="max")
        self.lif3 = neuron()
        self.max_embed3 = Unit(dim // 2, dim, 3, pool="max")
        self.embed1 = Unit(dim // 4, dim, 1, 4)

    def conv_bn_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.proj_conv, self.proj_bn)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.lif2(self.max_embed1(self.lif1(frames(x, self.proj_conv, self.proj_bn))))
        return self.max_embed3(self.lif3(self.max_embed2(s))) + self.embed1(s)


class EmbedOrigImageNet(nn.Module):
    """The ImageNet stem (``Embed_Orig_ImageNet``, Max-Former stage 1, Table 3): two stride-2 convs
    (the first on the raw image), a third conv, and a 1x1/2 shortcut from the second unit's spikes.
    Stride 4."""

    stride = 4

    def __init__(self, cin: int, dim: int, neuron: NeuronSpec) -> None:
        super().__init__()
        self.embed1 = Unit(cin, dim // 2, 3, 2)
        self.lif1 = neuron()
        self.embed2 = Unit(dim // 2, dim, 3, 2)
        self.lif2 = neuron()
        self.embed3 = Unit(dim, dim, 3)
        self.embed4 = Unit(dim // 2, dim, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.lif1(self.embed1(x))
        return self.embed3(self.lif2(self.embed2(s))) + self.embed4(s)


class QKEmbedInit(nn.Module, HasConvBN):
    """MS-QKFormer's ImageNet stem (``PatchEmbedInit``, stage 1): conv-BN-maxpool on the raw image,
    LIF, conv-BN-maxpool, LIF, conv-BN; 1x1/2 shortcut from the first LIF's spikes. Stride 4."""

    stride = 4

    def __init__(self, cin: int, dim: int, neuron: NeuronSpec) -> None:
        super().__init__()
        self.proj_conv, self.proj_bn = conv_bn(cin, dim // 2, 3)
        self.proj_maxpool = make_pool("max", 2)
        self.proj_lif = neuron()
        self.proj_conv1, self.proj_bn1 = conv_bn(dim // 2, dim, 3)
        self.proj_maxpool1 = make_pool("max", 2)
        self.proj_lif1 = neuron()
        self.proj_conv2, self.proj_bn2 = conv_bn(dim, dim, 3)
        self.rpe_conv, self.rpe_bn = conv_bn(dim // 2, dim, 1, 2)

    def conv_bn_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.proj_conv, self.proj_bn), (self.proj_conv1, self.proj_bn1),
                (self.proj_conv2, self.proj_bn2), (self.rpe_conv, self.rpe_bn)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.proj_lif(frames(x, self.proj_conv, self.proj_bn, self.proj_maxpool))
        y = self.proj_lif1(frames(s, self.proj_conv1, self.proj_bn1, self.proj_maxpool1))
        return frames(y, self.proj_conv2, self.proj_bn2) + frames(s, self.rpe_conv, self.rpe_bn)


class QKEmbedStage(nn.Module, HasConvBN):
    """MS-QKFormer's ImageNet stages 2-3 (``PatchEmbeddingStage``): LIF, conv-BN-maxpool, LIF,
    conv-BN; 1x1/2 shortcut from the first LIF's spikes. Stride 2."""

    stride = 2

    def __init__(self, cin: int, dim: int, neuron: NeuronSpec) -> None:
        super().__init__()
        self.proj_lif = neuron()
        self.proj3_conv, self.proj3_bn = conv_bn(cin, dim, 3)
        self.proj3_maxpool = make_pool("max", 2)
        self.proj_lif4 = neuron()
        self.proj4_conv, self.proj4_bn = conv_bn(dim, dim, 3)
        self.proj_res_conv, self.proj_res_bn = conv_bn(cin, dim, 1, 2)

    def conv_bn_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.proj3_conv, self.proj3_bn), (self.proj4_conv, self.proj4_bn),
                (self.proj_res_conv, self.proj_res_bn)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.proj_lif(x)
        y = self.proj_lif4(frames(s, self.proj3_conv, self.proj3_bn, self.proj3_maxpool))
        return frames(y, self.proj4_conv, self.proj4_bn) + frames(s, self.proj_res_conv, self.proj_res_bn)


# name -> class(cin, dim, neuron) with a ``stride`` attribute. Register your own embedding here.
EMBEDDINGS: dict[str, Callable[[int, int, NeuronSpec], nn.Module]] = {
    "orig": EmbedOrig,
    "orig_later": EmbedOrigLater,
    "max": EmbedMax,
    "avg": EmbedAvg,
    "1max": Embed1Max,
    "max_plus": EmbedMaxPlus,
    "orig_imagenet": EmbedOrigImageNet,
    "qk_init": QKEmbedInit,
    "qk_stage": QKEmbedStage,
}


def make_embedding(name: str, stage: int, cin: int, dim: int, neuron: NeuronSpec) -> nn.Module:
    """Stage ``stage``'s patch embedding from its spec name (``orig`` after stage 1 is ``orig_later``)."""
    name = "orig_later" if name == "orig" and stage > 1 else name
    if name not in EMBEDDINGS:
        raise ValueError(f"unknown patch embedding {name!r}; use one of {sorted(EMBEDDINGS)}")
    return EMBEDDINGS[name](cin, dim, neuron)


# ----------------------------------------------------------------------------- token mixers
# Membrane in, membrane out, same shape [T, B, C, H, W].

class PoolMixer(nn.Module):
    """Max-Pool / Avg-Pool token mixer (Table 4): a stride-1 3x3 pool on the membrane, no
    neuron, no residual, no parameters."""

    def __init__(self, pool: str) -> None:
        super().__init__()
        self.pool = make_pool(pool, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return unfold(self.pool(fold(x)), x.shape[0])


class DWC(nn.Module, HasConvBN):
    """DWC-k token mixer (section 3.3): ``LIF -> depth-wise Conv kxk (bias) -> BN``, plus input.
    One module for every odd k (the paper uses 3, 5, 7 and 1 in the ablations)."""

    def __init__(self, dim: int, k: int, neuron: NeuronSpec) -> None:
        super().__init__()
        if k % 2 != 1:
            raise ValueError(f"DWC kernel size must be odd to keep the token grid, got {k}")
        self.conv_neuron = neuron()
        self.conv = nn.Conv2d(dim, dim, k, 1, k // 2, groups=dim)
        self.conv_bn = nn.BatchNorm2d(dim)

    def conv_bn_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.conv, self.conv_bn)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + frames(self.conv_neuron(x), self.conv, self.conv_bn)


class SpikeProduct(nn.Module, SpikeSource):
    """A product in an attention mixer whose first operand is a neuron's output (and whose first
    ``binary`` operands are spiking neurons' outputs: 0 in the ANN twin), as a module so analysis tools can hook it (``energy.py`` counts ``macs_per_element``
    multiply-accumulates per element of the first operand, gated by its firing rate). In a float32
    training forward the binary operands are kept as one byte per element for the backward
    (``kernels.saved_as_bytes``; under autocast the product saves its own half-precision copies, as
    autograd does). ``spiking``: the product of binary operands is binary too (a mask times spikes),
    so the layer reading it keeps it as bytes as well (memory.py). No parameters, no state-dict entries."""

    def __init__(self, product: Callable[..., torch.Tensor], macs_per_element: int, binary: int,
                 spiking: bool = False) -> None:
        super().__init__()
        self.product, self.macs_per_element, self.binary, self.spiking = product, macs_per_element, binary, spiking

    def forward(self, spikes: torch.Tensor, *others: torch.Tensor) -> torch.Tensor:
        operands = (spikes, *others)
        if torch.is_grad_enabled() and not torch.is_autocast_enabled(spikes.device.type):
            with saved_as_bytes(*operands[:self.binary]):
                return self.product(*operands)
        return self.product(*operands)


def projection(dim: int, neuron: NeuronSpec) -> tuple[nn.Conv1d, nn.BatchNorm1d, Neuron]:
    """A q, k or v projection of the attention mixers: ``Conv1d 1x1 (no bias) -> BN1d -> LIF``."""
    return nn.Conv1d(dim, dim, 1, bias=False), nn.BatchNorm1d(dim), neuron()


class SpikeAttention(nn.Module, HasConvBN):
    """What SSA and token QK attention share: ``LIF`` on the input, the ``q``, ``k`` (and, with
    ``value``, ``v``) projections (``Conv1d 1x1 (no bias) -> BN1d -> LIF`` over the N = H*W tokens), an
    attention LIF with threshold 0.5 and the output ``Conv1d 1x1 (bias) -> BN1d``."""

    def __init__(self, dim: int, num_heads: int, neuron: NeuronSpec, value: bool) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads = dim, num_heads
        self.x_lif = neuron()
        self.q_conv, self.q_bn, self.q_lif = projection(dim, neuron)
        self.k_conv, self.k_bn, self.k_lif = projection(dim, neuron)
        if value:
            self.v_conv, self.v_bn, self.v_lif = projection(dim, neuron)
        self.attn_lif = neuron(v_threshold=0.5)
        self.proj_conv = nn.Conv1d(dim, dim, 1)
        self.proj_bn = nn.BatchNorm1d(dim)

    def conv_bn_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.q_conv, self.q_bn), (self.k_conv, self.k_bn), (self.proj_conv, self.proj_bn)]

    def project(self, conv: nn.Conv1d, bn: nn.BatchNorm1d, lif: Neuron, s: torch.Tensor) -> torch.Tensor:
        """Spikes ``[T, B, C, N]`` of one projection of the input spikes ``s`` ``[T, B, C, N]``."""
        return lif(frames(s, conv, bn))

    def output(self, y: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """``attn_lif -> Conv1d -> BN1d`` on ``[T, B, C, N]``, back to the membrane's ``shape``."""
        return frames(self.attn_lif(y), self.proj_conv, self.proj_bn).reshape(shape)


class SSA(SpikeAttention):
    """Spiking self-attention (Spikformer's SSA; the paper's stage-3 mixer), optionally followed by
    a DWC-5 (the "SSA+DWC" mixer of Table 7).

    ``LIF`` on the input; q, k, v each ``Conv1d 1x1 -> BN1d -> LIF`` over the N = H*W tokens; per head
    ``x = q @ (k^T @ v) * 0.125``; ``LIF (threshold 0.5)``; ``Conv1d 1x1 (bias) -> BN1d``; plus input.
    """

    scale = 0.125

    def __init__(self, dim: int, num_heads: int, neuron: NeuronSpec, dwc: bool = False) -> None:
        super().__init__(dim, num_heads, neuron, value=True)
        d = dim // num_heads  # each product costs N*d*d per head, d per element of its spiking operand
        spiking = neuron.spiking  # q, k and v are spikes (ReLU outputs in the ANN twin); kv is not
        self.kv_product = SpikeProduct(lambda k, v: k.transpose(-2, -1) @ v, d, binary=2 if spiking else 0)
        self.qkv_product = SpikeProduct(lambda q, kv: q @ kv, d, binary=1 if spiking else 0)
        if dwc:
            self.dwc_neuron = neuron()
            self.dwc = nn.Conv2d(dim, dim, 5, 1, 2, groups=dim)
            self.dwc_bn = nn.BatchNorm2d(dim)
        else:
            self.dwc = None

    def conv_bn_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        dwc = [] if self.dwc is None else [(self.dwc, self.dwc_bn)]
        return super().conv_bn_pairs() + [(self.v_conv, self.v_bn)] + dwc

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, C, N] -> [T, B, heads, N, C/heads]``."""
        T, B, C, N = x.shape
        return x.transpose(-1, -2).reshape(T, B, N, self.num_heads, C // self.num_heads).transpose(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        s = self.x_lif(x).flatten(3)                                                  # [T, B, C, N]
        q = self.heads(self.project(self.q_conv, self.q_bn, self.q_lif, s))          # [T, B, h, N, C/h]
        k = self.heads(self.project(self.k_conv, self.k_bn, self.k_lif, s))
        v = self.heads(self.project(self.v_conv, self.v_bn, self.v_lif, s))
        y = self.qkv_product(q, self.kv_product(k, v)) * self.scale                  # q @ (k^T @ v) * scale
        y = self.output(y.transpose(3, 4).reshape(T, B, C, H * W), x.shape)          # heads back to channels
        if self.dwc is not None:  # SSA+DWC: a depth-wise 5x5 restores high frequencies (Table 7)
            y = frames(self.dwc_neuron(y), self.dwc, self.dwc_bn)
        return y + x


class TokenQK(SpikeAttention):
    """Token QK attention (QKFormer; MS-QKFormer's early-stage mixer): ``LIF`` on the input; q, k
    each ``Conv1d 1x1 -> BN1d -> LIF``; per head, q summed over the head's channels goes through
    ``LIF (threshold 0.5)`` to give a binary token mask; ``x = mask * k``; ``Conv1d -> BN1d``; plus input."""

    def __init__(self, dim: int, num_heads: int, neuron: NeuronSpec) -> None:
        super().__init__(dim, num_heads, neuron, value=False)
        spiking = neuron.spiking  # q, k and the mask are spikes (ReLU outputs in the ANN twin)
        self.q_sum = SpikeProduct(lambda q: q.sum(dim=3, keepdim=True), 1, binary=1 if spiking else 0)  # 1 add per q element
        self.mask_product = SpikeProduct(lambda mask, k: mask * k, dim // num_heads,  # d per mask element
                                         binary=2 if spiking else 0, spiking=spiking)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        s = self.x_lif(x).flatten(3)                                                  # [T, B, C, N]
        q = self.project(self.q_conv, self.q_bn, self.q_lif, s).unflatten(2, (self.num_heads, -1))  # [T, B, h, C/h, N]
        k = self.project(self.k_conv, self.k_bn, self.k_lif, s).unflatten(2, (self.num_heads, -1))
        mask = self.attn_lif(self.q_sum(q))                                           # [T, B, h, 1, N]
        y = self.mask_product(mask, k).flatten(2, 3)                                  # [T, B, C, N]
        return frames(y, self.proj_conv, self.proj_bn).reshape(x.shape) + x


# name -> factory(dim, num_heads, neuron). Register your own mixer here to use it in spec strings.
MIXERS: dict[str, Callable[[int, int, NeuronSpec], nn.Module]] = {
    "id": lambda dim, heads, neuron: nn.Identity(),
    "max": lambda dim, heads, neuron: PoolMixer("max"),
    "avg": lambda dim, heads, neuron: PoolMixer("avg"),
    "ssa": SSA,
    "ssa_dwc": lambda dim, heads, neuron: SSA(dim, heads, neuron, dwc=True),
    "qk": TokenQK,
}


def make_mixer(name: str, dim: int, num_heads: int, neuron: NeuronSpec) -> nn.Module:
    """Token mixer from its spec name: a key of :data:`MIXERS`, or ``dwc<k>`` for any odd k."""
    if name in MIXERS:
        return MIXERS[name](dim, num_heads, neuron)
    match = re.fullmatch(r"dwc(\d+)", name)
    if match:
        return DWC(dim, int(match.group(1)), neuron)
    raise ValueError(f"unknown token mixer {name!r}; use one of {sorted(MIXERS)} or dwc<k> (odd k, e.g. dwc3)")


class MLP(nn.Module, HasConvBN):
    """S-MLP: ``LIF -> Conv1x1 -> BN -> LIF -> Conv1x1 -> BN``, plus input. When the hidden width
    equals the width (ratio 1, event models) the block input is also added after the first BN,
    and that sum is the identity of the second shortcut."""

    def __init__(self, dim: int, hidden: int, neuron: NeuronSpec) -> None:
        super().__init__()
        self.fc1_lif = neuron()
        self.fc1_conv = nn.Conv2d(dim, hidden, 1)
        self.fc1_bn = nn.BatchNorm2d(hidden)
        self.fc2_lif = neuron()
        self.fc2_conv = nn.Conv2d(hidden, dim, 1)
        self.fc2_bn = nn.BatchNorm2d(dim)
        self.inner_residual = hidden == dim

    def conv_bn_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.fc1_conv, self.fc1_bn), (self.fc2_conv, self.fc2_bn)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = frames(self.fc1_lif(x), self.fc1_conv, self.fc1_bn)
        if self.inner_residual:
            h = x = h + x
        return x + frames(self.fc2_lif(h), self.fc2_conv, self.fc2_bn)


class Block(nn.Module):
    """Token mixer then S-MLP (Figure 1). Attention mixers are stored as ``attn``, the others as
    ``mixer`` (the other attribute is None), matching the authors' checkpoint keys."""

    def __init__(self, mixer: nn.Module, mlp: MLP) -> None:
        super().__init__()
        attention = isinstance(mixer, SpikeAttention)
        self.attn = mixer if attention else None
        self.mixer = None if attention else mixer
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp((self.mixer if self.attn is None else self.attn)(x))


# ----------------------------------------------------------------------------- models

@torch.no_grad()
def fold_bn_into_conv(conv: nn.Conv1d | nn.Conv2d, bn: nn.BatchNorm1d | nn.BatchNorm2d) -> None:
    """``BN(conv(x)) = conv'(x)`` with ``w' = w * g / s`` and ``b' = (b - mean) * g / s + beta``,
    ``s = sqrt(var + eps)``."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight.mul_(scale.reshape(-1, *[1] * (conv.weight.dim() - 1)))
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)


def up_to(items: Sequence[nn.Module], n: int, what: str) -> list[nn.Module | None]:
    """``items`` padded with None to ``n`` entries (the model attributes of absent stages)."""
    if not 1 <= len(items) <= n:
        raise ValueError(f"{what} has 1 to {n} stages, got {len(items)}")
    return [*items, *[None] * (n - len(items))]


@dataclass
class NetConfig:
    """What every model's config has: input, classes, time steps, and the neuron of every layer
    (``neuron``: ``lif``, ``if`` or ``relu`` for the ANN twin; ``neuron_backend``: see neurons.py)."""

    in_channels: int = 3
    num_classes: int = 10
    img_size: int = 32
    T: int = 4
    neuron: str = "lif"
    tau: float = 2.0
    neuron_backend: str = "auto"


class SpikingNet(nn.Module):
    """What Max-Former and Max-ResNet share: T, the stage loop with optional activation
    checkpointing per stage (``checkpoint_stages``, for T=16 event training), BN folding, and what
    the analysis tools ask of a model (:attr:`is_event`, :meth:`named_blocks`, :meth:`stage_of`)."""

    cfg: NetConfig
    checkpoint_stages: bool = False

    def set_lean(self, on: bool) -> "SpikingNet":
        """The model-level memory switch (memory.py; on from construction): spikes kept as bytes and
        membranes rebuilt after BN for the backward. The same numbers either way."""
        memory.lean(self, on)
        return self

    @property
    def T(self) -> int:
        return self.cfg.T

    @property
    def is_event(self) -> bool:
        """True for models of 2-channel (ON/OFF) event frames ``[B, T, 2, H, W]``."""
        return self.cfg.in_channels == 2

    def stages(self) -> list[nn.Module]:
        """The stages in forward order, each a module from membrane to membrane."""
        raise NotImplementedError

    def named_blocks(self) -> list[tuple[str, nn.Module]]:
        """Embeddings and blocks in forward order, with their module paths."""
        raise NotImplementedError

    def components(self) -> list[tuple[str, str, str]]:
        """``(module path, stage label, component)`` for :meth:`stage_of`, most specific first."""
        raise NotImplementedError

    def stage_of(self, module_name: str) -> tuple[str, str]:
        """``(stage label, component)`` of a module path, component one of ``embedding``, ``mixer``,
        ``mlp``, ``block``, ``classifier`` or ``other`` (stage ``"-"``)."""
        for path, stage, component in self.components():
            if module_name == path or module_name.startswith(path + "."):
                return stage, component
        return "-", "other"

    def run_stages(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages():
            x = checkpoint(stage, x, use_reentrant=False) if self.checkpoint_stages and self.training else stage(x)
        return x

    def fuse(self) -> "SpikingNet":
        """Fold every batch norm into the convolution before it, for inference (eval mode).

        The pairs come from each module's ``conv_bn_pairs`` (:class:`HasConvBN`). The fused model
        computes the same function with fewer passes over the activations, but its state dict no
        longer has BN entries: load checkpoints before fusing.
        """
        if self.training:
            raise RuntimeError("fuse() folds running BN statistics: call model.eval() first")
        place = {id(child): (parent, name) for parent in self.modules() for name, child in parent.named_children()}
        for module in list(self.modules()):
            if isinstance(module, HasConvBN):
                for conv, bn in module.conv_bn_pairs():
                    if isinstance(bn, nn.modules.batchnorm._BatchNorm):
                        fold_bn_into_conv(conv, bn)
                        parent, name = place[id(bn)]
                        parent.register_module(name, nn.Identity())
        return self


def to_time_first(x: torch.Tensor, T: int, in_channels: int, stride: int) -> torch.Tensor:
    """Static ``[B, C, H, W]`` -> ``[T, B, C, H, W]`` (repeated); events ``[B, T, C, H, W]`` -> time-first.

    Raises ``ValueError`` naming the expected shape for a wrong rank, channel count or a resolution
    the model's total stride does not divide.
    """
    expected = f"[B, {in_channels}, H, W] (static) or [B, T, {in_channels}, H, W] (events), H and W divisible by {stride}"
    if x.dim() not in (4, 5):
        raise ValueError(f"expected input {expected}; got rank-{x.dim()} tensor of shape {list(x.shape)}")
    C, H, W = x.shape[-3:]
    if C != in_channels:
        raise ValueError(f"model was built for {in_channels} input channels; expected {expected}, got {list(x.shape)}")
    if H % stride or W % stride:
        raise ValueError(f"resolution {H}x{W} is not divisible by the model's total stride {stride}; "
                         f"expected {expected}, got {list(x.shape)}")
    if x.dim() == 4:
        return x.unsqueeze(0).expand(T, *x.shape)
    return x.transpose(0, 1)


def init_weights(model: nn.Module, scheme: str) -> None:
    """The authors' initialisation: ``cifar`` (also event) draws Linear weights from a truncated
    normal (std 0.02, bias 0); ``imagenet`` does so for Conv2d and sets BN to weight 1, bias 0."""
    if scheme not in ("cifar", "imagenet"):
        raise ValueError(f"unknown init scheme {scheme!r}; use 'cifar' or 'imagenet'")
    kinds = (nn.Linear,) if scheme == "cifar" else (nn.Conv2d,)
    for m in model.modules():
        if isinstance(m, kinds):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif scheme == "imagenet" and isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@dataclass
class MaxFormerConfig(NetConfig):
    """A hierarchical spiking transformer, one entry per stage (1 to 3 stages; Table 1, Tables 4 and 7).

    ``embeds[i]`` names stage i's patch embedding (see :data:`EMBEDDINGS`; ``orig`` in a later
    stage means ``orig_later``) and ``mixers[i]`` its token mixer (:func:`make_mixer`).
    """

    dims: tuple[int, ...] = (96, 192, 384)
    depths: tuple[int, ...] = (1, 1, 2)
    embeds: tuple[str, ...] = ("orig", "max", "max")
    mixers: tuple[str, ...] = ("id", "dwc3", "ssa")
    mlp_ratio: float = 4.0
    num_heads: int = 8
    init: str = "cifar"


class MaxFormer(SpikingNet):
    """Max-Former (and MS-QKFormer, which differs only in its per-stage spec).

    Input: static images ``[B, C, H, W]`` (repeated T times) or event frames ``[B, T, C, H, W]``
    (run with whatever T they carry). Output: logits ``[B, num_classes]``. Head: mean over tokens,
    LIF, Linear, mean over T.
    """

    def __init__(self, cfg: MaxFormerConfig) -> None:
        super().__init__()
        n = len(cfg.dims)
        if not (len(cfg.depths) == len(cfg.embeds) == len(cfg.mixers) == n):
            raise ValueError(f"dims, depths, embeds and mixers need one entry per stage, got "
                             f"dims={cfg.dims}, depths={cfg.depths}, embeds={cfg.embeds}, mixers={cfg.mixers}")
        self.cfg = cfg
        neuron = NeuronSpec(cfg.neuron, cfg.tau, cfg.neuron_backend)
        embeds = [make_embedding(embed, i, cin, dim, neuron)
                  for i, (cin, dim, embed) in enumerate(zip((cfg.in_channels, *cfg.dims), cfg.dims, cfg.embeds), 1)]
        blocks = [nn.ModuleList(Block(make_mixer(mixer, dim, cfg.num_heads, neuron),
                                      MLP(dim, int(dim * cfg.mlp_ratio), neuron)) for _ in range(depth))
                  for dim, depth, mixer in zip(cfg.dims, cfg.depths, cfg.mixers)]
        self.patch_embed1, self.patch_embed2, self.patch_embed3 = up_to(embeds, 3, "Max-Former")
        self.stage1, self.stage2, self.stage3 = up_to(blocks, 3, "Max-Former")
        self.head_lif = neuron()
        self.head = nn.Linear(cfg.dims[-1], cfg.num_classes)
        self.stride = 1
        for embed in embeds:
            self.stride *= embed.stride
        init_weights(self, cfg.init)
        memory.install(self)

    def embeddings_and_blocks(self) -> list[tuple[nn.Module, nn.ModuleList]]:
        """Stage i's patch embedding and its blocks, for the stages the model has."""
        pairs = zip((self.patch_embed1, self.patch_embed2, self.patch_embed3), (self.stage1, self.stage2, self.stage3))
        return [(embed, blocks) for embed, blocks in pairs if embed is not None]

    def stages(self) -> list[nn.Module]:
        """Stage i = ``patch_embed{i}`` followed by the blocks of ``stage{i}``."""
        return [nn.Sequential(embed, *blocks) for embed, blocks in self.embeddings_and_blocks()]

    def named_blocks(self) -> list[tuple[str, nn.Module]]:
        out = []
        for i, (embed, blocks) in enumerate(self.embeddings_and_blocks(), 1):
            out += [(f"patch_embed{i}", embed), *((f"stage{i}.{j}", b) for j, b in enumerate(blocks))]
        return out

    def components(self) -> list[tuple[str, str, str]]:
        out = []
        for i, (_, blocks) in enumerate(self.embeddings_and_blocks(), 1):
            out.append((f"patch_embed{i}", str(i), "embedding"))
            for j, block in enumerate(blocks):
                mixer = "mixer" if block.attn is None else "attn"
                out += [(f"stage{i}.{j}.{mixer}", str(i), "mixer"), (f"stage{i}.{j}.mlp", str(i), "mlp")]
        return out + [("head", "head", "classifier")]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Time-first input ``[T, B, C, H, W]`` -> final membrane ``[T, B, D, H/s, W/s]``."""
        return self.run_stages(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_time_first(x, self.cfg.T, self.cfg.in_channels, self.stride)
        x = self.forward_features(x).flatten(3).mean(3)     # [T, B, D]
        return self.head(self.head_lif(x)).mean(0)          # [B, classes]


# ----------------------------------------------------------------------------- Max-ResNet

class BasicBlock(nn.Module, HasConvBN):
    """Membrane-shortcut basic block: ``LIF -> Conv3x3 -> BN [-> MaxPool 3/2] -> LIF -> Conv3x3 -> BN``
    plus the input, through ``Conv1x1(stride) + BN`` on the membrane where the shape changes.
    Max-ResNet downsamples with the max-pool, keeping the first conv at stride 1 (section 3.2)."""

    def __init__(self, cin: int, cout: int, downsample: bool, neuron: NeuronSpec) -> None:
        super().__init__()
        stride = 2 if downsample else 1
        self.spike1 = neuron()
        self.conv1, self.bn1 = conv_bn(cin, cout, 3)
        self.pool = make_pool("max" if downsample else None, 2)
        self.spike2 = neuron()
        self.conv2, self.bn2 = conv_bn(cout, cout, 3)
        if downsample or cin != cout:
            self.downsample = nn.Sequential(FoldTime(), *conv_bn(cin, cout, 1, stride))
        else:
            self.downsample = None

    def conv_bn_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        shortcut = [] if self.downsample is None else [(self.downsample[1], self.downsample[2])]
        return [(self.conv1, self.bn1), (self.conv2, self.bn2), *shortcut]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.spike2(frames(self.spike1(x), self.conv1, self.bn1, self.pool))
        y = frames(y, self.conv2, self.bn2)
        return y + (x if self.downsample is None else unfold(self.downsample(x), x.shape[0]))


@dataclass
class MaxResNetConfig(NetConfig):
    """Max-ResNet-18: ``layers`` blocks per stage (1 to 4 stages) of ``widths`` channels after a
    64-channel stem."""

    layers: tuple[int, ...] = (3, 3, 2)
    widths: tuple[int, ...] = (128, 256, 512)


class MaxResNet(SpikingNet, HasConvBN):
    """Max-ResNet (section 3.2, Table 5): stem ``Conv3x3(3->64) + BN`` on the raw image, stages of
    basic blocks (the first block of every stage after the first downsamples by max-pool), head
    ``LIF -> global average pool -> Linear -> mean over T``."""

    def __init__(self, cfg: MaxResNetConfig) -> None:
        super().__init__()
        if len(cfg.layers) != len(cfg.widths):
            raise ValueError(f"layers {cfg.layers} and widths {cfg.widths} need one entry per stage")
        self.cfg = cfg
        neuron = NeuronSpec(cfg.neuron, cfg.tau, cfg.neuron_backend)
        self.conv1, self.bn1 = conv_bn(cfg.in_channels, 64, 3)
        layers = [nn.Sequential(*(BasicBlock(cin if j == 0 else width, width, i > 1 and j == 0, neuron)
                                  for j in range(n)))
                  for i, (cin, n, width) in enumerate(zip((64, *cfg.widths), cfg.layers, cfg.widths), 1)]
        self.layer1, self.layer2, self.layer3, self.layer4 = up_to(layers, 4, "Max-ResNet")
        self.spike = neuron()
        self.fc1 = nn.Linear(cfg.widths[-1], cfg.num_classes)
        self.stride = 2 ** (len(cfg.layers) - 1)
        memory.install(self)

    def conv_bn_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.conv1, self.bn1)]

    def stages(self) -> list[nn.Module]:
        return [layer for layer in (self.layer1, self.layer2, self.layer3, self.layer4) if layer is not None]

    def named_blocks(self) -> list[tuple[str, nn.Module]]:
        blocks = [(f"layer{i}.{j}", block) for i, layer in enumerate(self.stages(), 1) for j, block in enumerate(layer)]
        return [("bn1", self.bn1), *blocks]

    def components(self) -> list[tuple[str, str, str]]:
        layers = [(f"layer{i}", str(i), "block") for i in range(1, len(self.stages()) + 1)]
        return [("conv1", "stem", "embedding"), *layers, ("fc1", "head", "classifier")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_time_first(x, self.cfg.T, self.cfg.in_channels, self.stride)
        x = self.run_stages(frames(x, self.conv1, self.bn1))
        x = self.spike(x).mean((3, 4))                     # [T, B, C]
        return self.fc1(x).mean(0)                         # [B, classes]


# ----------------------------------------------------------------------------- calibration

@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Replace every BatchNorm's running statistics by their average over ``batches``; return it in eval mode.

    A freshly initialised model has running mean 0 and variance 1, which in eval mode leaves most
    of its neurons silent; after this its neurons fire as at the start of training, so spectra
    and firing rates of untrained models mean something. Nothing else changes.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    model.train()
    for x in batches:
        model(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return model.eval()
