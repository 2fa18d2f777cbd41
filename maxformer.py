"""Max-Former, MS-QKFormer and Max-ResNet: every model of *Spiking Neural Networks Need
High-Frequency Information* (Fang et al., NeurIPS 2025, arXiv 2505.18608), in one file.

The paper's fix for the low-pass nature of spiking neurons (section 3.1) is two cheap operators:
an extra max-pool in the patch embeddings (section 3.2, "Embed-Max") and depth-wise convolutions
instead of self-attention in the early stages (section 3.3). A model is a stack of stages, each a
patch embedding followed by blocks; a block is a token mixer followed by an S-MLP (Figure 1, Table 1).

Conventions (``MODELS.md`` in the reference facts):
- activations are membrane potentials ``[T, B, C, H, W]`` (time first); every shortcut adds
  real-valued BN outputs ("membrane shortcut"), never spikes;
- convolutions and batch norms run on ``[T*B, C, H, W]`` (time folded into batch);
- attribute names follow the authors' checkpoint keys, so their released weights load by name.

Public API: :func:`create_model`, :func:`list_models`, :func:`parse_spec`, :func:`load_official`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from neurons import make_neuron


# ----------------------------------------------------------------------------- time folding

def fold(x: torch.Tensor) -> torch.Tensor:
    """``[T, B, ...] -> [T*B, ...]``: run a per-frame layer on every time step at once."""
    return x.flatten(0, 1)


def unfold(x: torch.Tensor, T: int) -> torch.Tensor:
    """``[T*B, ...] -> [T, B, ...]``."""
    return x.unflatten(0, (T, -1))


class FoldTime(nn.Module):
    """``[T, B, ...] -> [T*B, ...]`` as a module (first element of Max-ResNet's shortcut)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fold(x)


@dataclass
class NeuronSpec:
    """Which neuron every layer of a model uses: ``kind`` is ``lif``, ``if`` or ``relu`` (ANN twin)."""

    kind: str = "lif"
    tau: float = 2.0
    backend: str = "auto"

    def __call__(self, v_threshold: float = 1.0) -> nn.Module:
        return make_neuron(self.kind, v_threshold=v_threshold, tau=self.tau, backend=self.backend)


class MaxPoolFunction(torch.autograd.Function):
    """3x3 max-pool, padding 1, whose backward keeps only the argmax indices: autograd's own
    max-pool also keeps its input, which the backward reads only for its shape. Same outputs and
    the same gradients (same kernels), a third less memory for this layer in training."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, stride: int) -> torch.Tensor:
        y, indices = torch.ops.aten.max_pool2d_with_indices(x, [3, 3], [stride, stride], [1, 1])
        ctx.save_for_backward(indices)
        ctx.shape, ctx.stride = x.shape, stride
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (indices,) = ctx.saved_tensors
        shape_only = grad.new_empty(()).expand(ctx.shape)  # the kernel reads the input's shape only
        s = ctx.stride
        return torch.ops.aten.max_pool2d_with_indices_backward(
            grad, shape_only, [3, 3], [s, s], [1, 1], [1, 1], False, indices), None


class MaxPool(nn.MaxPool2d):
    """``nn.MaxPool2d(3, stride, 1)`` that saves only its indices for the backward (:class:`MaxPoolFunction`)."""

    def __init__(self, stride: int) -> None:
        super().__init__(3, stride, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return MaxPoolFunction.apply(x, self.stride)
        return super().forward(x)


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


class Unit(nn.Module):
    """``Conv2d(k, s, p, bias=False) -> BN2d -> [pool]`` on spikes ``[T, B, Cin, H, W]``.

    This is MODELS.md's ``Unit`` without its leading LIF: embeddings own their neurons, because
    a main path and a shortcut often read the same spikes (computed once here).
    """

    def __init__(self, cin: int, cout: int, k: int, s: int = 1, pool: str | None = None) -> None:
        super().__init__()
        self.embed_conv, self.embed_bn = conv_bn(cin, cout, k, s)
        self.pool = make_pool(pool, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return unfold(self.pool(self.embed_bn(self.embed_conv(fold(x)))), x.shape[0])


# ----------------------------------------------------------------------------- patch embeddings
# Input membrane [T, B, Cin, H, W] -> output membrane [T, B, D, H/stride, W/stride].

class EmbedOrig(nn.Module):
    """``Embed_Orig`` (CIFAR stage 1, the paper's Embed-Orig, Table 4): stem, then
    ``conv3x3`` main path and ``conv1x1`` shortcut on the stem's spikes. Stride 1."""

    stride = 1

    def __init__(self, cin: int, dim: int, neuron: NeuronSpec) -> None:
        super().__init__()
        self.proj_conv, self.proj_bn = conv_bn(cin, dim // 2, 3)
        self.lif = neuron()
        self.embed1 = Unit(dim // 2, dim, 3)
        self.embed2 = Unit(dim // 2, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.lif(unfold(self.proj_bn(self.proj_conv(fold(x))), x.shape[0]))
        return self.embed1(s) + self.embed2(s)


class TwoStepEmbed(nn.Module):
    """The stage-2/3 patch embeddings: ``LIF -> Unit -> LIF -> Unit`` on the main path plus a 1x1
    ``Unit`` shortcut, both reading the first LIF's spikes; stride 2. The variants differ only in
    where they downsample (``where``) and in the authors' key names for the three units (``names``):

    - ``conv`` (``Embed_Orig_later``, Embed-Orig in stages >= 2): the second conv and the shortcut have stride 2;
    - ``first`` (``Embed_Max`` / ``Embed_Avg``, the paper's Embed-Max, section 3.2): a 3x3/2 max- or
      avg-pool after the first conv and on the shortcut;
    - ``second`` (``Embed_1Max``, MS-QKFormer): a 3x3/2 max-pool after the second conv; stride-2 shortcut.
    """

    stride = 2

    def __init__(self, cin: int, dim: int, neuron: NeuronSpec, names: tuple[str, str, str],
                 where: str, pool: str = "max") -> None:
        super().__init__()
        if where not in ("conv", "first", "second"):
            raise ValueError(f"where must be 'conv', 'first' or 'second', got {where!r}")
        self.names = names
        first_pool = pool if where == "first" else None
        self.lif1 = neuron()
        setattr(self, names[0], Unit(cin, dim, 3, pool=first_pool))
        self.lif2 = neuron()
        setattr(self, names[1], Unit(dim, dim, 3, 2 if where == "conv" else 1, pool=pool if where == "second" else None))
        setattr(self, names[2], Unit(cin, dim, 1, 1 if where == "first" else 2, pool=first_pool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second, shortcut = (getattr(self, name) for name in self.names)
        s = self.lif1(x)
        return second(self.lif2(first(s))) + shortcut(s)


class EmbedMaxPlus(nn.Module):
    """``Embed_Max_plus`` (event stage 1, the paper's Embed-Max+): stem to D/8, three
    conv-BN-maxpool units to D/4, D/2, D, and a stride-4 1x1 shortcut from the second unit's
    spikes. Stride 8: 128x128 event frames become 16x16 tokens."""

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = unfold(self.proj_bn(self.proj_conv(fold(x))), x.shape[0])
        s = self.lif2(self.max_embed1(self.lif1(stem)))
        return self.max_embed3(self.lif3(self.max_embed2(s))) + self.embed1(s)


class EmbedOrigImageNet(nn.Module):
    """``Embed_Orig_ImageNet`` (Max-Former ImageNet stage 1): two stride-2 convs (the first on the
    raw image), a third conv, and a 1x1/2 shortcut from the second unit's spikes. Stride 4."""

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


class QKEmbedInit(nn.Module):
    """``PatchEmbedInit`` (MS-QKFormer ImageNet stage 1): conv-BN-maxpool on the raw image, LIF,
    conv-BN-maxpool, LIF, conv-BN; 1x1/2 shortcut from the first LIF's spikes. Stride 4."""

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[0]
        s = self.proj_lif(unfold(self.proj_maxpool(self.proj_bn(self.proj_conv(fold(x)))), T))
        y = self.proj_maxpool1(self.proj_bn1(self.proj_conv1(fold(s))))
        y = self.proj_bn2(self.proj_conv2(fold(self.proj_lif1(unfold(y, T)))))
        return unfold(y + self.rpe_bn(self.rpe_conv(fold(s))), T)


class QKEmbedStage(nn.Module):
    """``PatchEmbeddingStage`` (MS-QKFormer ImageNet stages 2-3): LIF, conv-BN-maxpool, LIF,
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[0]
        s = fold(self.proj_lif(x))
        y = unfold(self.proj3_maxpool(self.proj3_bn(self.proj3_conv(s))), T)
        y = self.proj4_bn(self.proj4_conv(fold(self.proj_lif4(y))))
        return unfold(y + self.proj_res_bn(self.proj_res_conv(s)), T)


# name -> class(cin, dim, neuron) with a ``stride`` attribute. Register your own embedding here.
EMBEDDINGS: dict[str, Callable[..., nn.Module]] = {
    "orig": EmbedOrig,
    "orig_later": partial(TwoStepEmbed, names=("embed1", "embed2", "embed3"), where="conv"),
    "max": partial(TwoStepEmbed, names=("max_embed1", "embed1", "max_embed2"), where="first", pool="max"),
    "avg": partial(TwoStepEmbed, names=("max_embed1", "embed1", "max_embed2"), where="first", pool="avg"),
    "1max": partial(TwoStepEmbed, names=("embed1", "max_embed1", "embed2"), where="second", pool="max"),
    "max_plus": EmbedMaxPlus,
    "orig_imagenet": EmbedOrigImageNet,
    "qk_init": QKEmbedInit,
    "qk_stage": QKEmbedStage,
}


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


class DWC(nn.Module):
    """DWC-k token mixer (section 3.3): ``LIF -> depth-wise Conv kxk (bias) -> BN``, plus input.
    One module for every odd k (the paper uses 3, 5, 7 and 1 in the ablations)."""

    def __init__(self, dim: int, k: int, neuron: NeuronSpec) -> None:
        super().__init__()
        if k % 2 != 1:
            raise ValueError(f"DWC kernel size must be odd to keep the token grid, got {k}")
        self.conv_neuron = neuron()
        self.conv = nn.Conv2d(dim, dim, k, 1, k // 2, groups=dim)
        self.conv_bn = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + unfold(self.conv_bn(self.conv(fold(self.conv_neuron(x)))), x.shape[0])


def tokens_conv(conv: nn.Conv1d, bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """``Conv1d 1x1 -> BN1d`` on tokens ``[T, B, C, N]``."""
    return unfold(bn(conv(fold(x))), x.shape[0])


class SpikeAttention(nn.Module):
    """What SSA and token QK attention share: ``LIF`` on the input, then for each named projection
    (``q``, ``k``, ``v``) ``Conv1d 1x1 (no bias) -> BN1d -> LIF`` over the N = H*W tokens, an attention
    LIF with threshold 0.5, and the output ``Conv1d 1x1 (bias) -> BN1d``."""

    def __init__(self, dim: int, num_heads: int, neuron: NeuronSpec, projections: str) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads = dim, num_heads
        self.x_lif = neuron()
        for name in projections:
            setattr(self, f"{name}_conv", nn.Conv1d(dim, dim, 1, bias=False))
            setattr(self, f"{name}_bn", nn.BatchNorm1d(dim))
            setattr(self, f"{name}_lif", neuron())
        self.attn_lif = neuron(v_threshold=0.5)
        self.proj_conv = nn.Conv1d(dim, dim, 1)
        self.proj_bn = nn.BatchNorm1d(dim)

    def project(self, name: str, s: torch.Tensor) -> torch.Tensor:
        """Spikes ``[T, B, C, N]`` of projection ``name`` (q, k or v)."""
        conv, bn, lif = (getattr(self, f"{name}_{part}") for part in ("conv", "bn", "lif"))
        return lif(tokens_conv(conv, bn, s))


class SSA(SpikeAttention):
    """Spiking self-attention (Spikformer's SSA; the paper's stage-3 mixer), optionally followed by
    a DWC-5 (the "SSA+DWC" mixer of Table 7).

    ``LIF`` on the input; q, k, v each ``Conv1d 1x1 -> BN1d -> LIF`` over the N = H*W tokens; per head
    ``x = q @ (k^T @ v) * 0.125``; ``LIF (threshold 0.5)``; ``Conv1d 1x1 (bias) -> BN1d``; plus input.
    """

    scale = 0.125

    def __init__(self, dim: int, num_heads: int, neuron: NeuronSpec, dwc: bool = False) -> None:
        super().__init__(dim, num_heads, neuron, "qkv")
        if dwc:
            self.dwc_neuron = neuron()
            self.dwc = nn.Conv2d(dim, dim, 5, 1, 2, groups=dim)
            self.dwc_bn = nn.BatchNorm2d(dim)
        else:
            self.dwc = None

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, C, N] -> [T, B, heads, N, C/heads]``."""
        T, B, C, N = x.shape
        return x.transpose(-1, -2).reshape(T, B, N, self.num_heads, C // self.num_heads).transpose(2, 3)

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Linear spike attention ``q @ (k^T @ v) * scale`` per head: ``[T, B, h, N, d]``."""
        return q @ (k.transpose(-2, -1) @ v) * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        s = self.x_lif(x).flatten(3)                                           # [T, B, C, N]
        q, k, v = (self.heads(self.project(name, s)) for name in "qkv")       # [T, B, h, N, C/h]
        y = self.attention(q, k, v).transpose(3, 4).reshape(T, B, C, H * W)  # heads back to channels
        y = tokens_conv(self.proj_conv, self.proj_bn, self.attn_lif(y)).reshape(T, B, C, H, W)
        if self.dwc is not None:  # SSA+DWC: a depth-wise 5x5 restores high frequencies (Table 7)
            y = unfold(self.dwc_bn(self.dwc(fold(self.dwc_neuron(y)))), T)
        return y + x


class TokenQK(SpikeAttention):
    """Token QK attention (QKFormer; MS-QKFormer's early-stage mixer): ``LIF`` on the input; q, k
    each ``Conv1d 1x1 -> BN1d -> LIF``; per head, q summed over the head's channels goes through
    ``LIF (threshold 0.5)`` to give a binary token mask; ``x = mask * k``; ``Conv1d -> BN1d``; plus input."""

    def __init__(self, dim: int, num_heads: int, neuron: NeuronSpec) -> None:
        super().__init__(dim, num_heads, neuron, "qk")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        s = self.x_lif(x).flatten(3)                                                  # [T, B, C, N]
        q, k = (self.project(name, s).unflatten(2, (self.num_heads, -1)) for name in "qk")  # [T, B, h, C/h, N]
        mask = self.attn_lif(q.sum(dim=3, keepdim=True))                              # [T, B, h, 1, N]
        y = (mask * k).flatten(2, 3)                                                  # [T, B, C, N]
        return tokens_conv(self.proj_conv, self.proj_bn, y).reshape(T, B, C, H, W) + x


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


class MLP(nn.Module):
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[0]
        h = unfold(self.fc1_bn(self.fc1_conv(fold(self.fc1_lif(x)))), T)
        if self.inner_residual:
            h = x = h + x
        return x + unfold(self.fc2_bn(self.fc2_conv(fold(self.fc2_lif(h)))), T)


class Block(nn.Module):
    """Token mixer then S-MLP (Figure 1). Attention mixers are stored as ``attn``, the others as
    ``mixer``, matching the authors' checkpoint keys."""

    def __init__(self, mixer: nn.Module, mlp: MLP) -> None:
        super().__init__()
        if isinstance(mixer, SpikeAttention):
            self.attn = mixer
        else:
            self.mixer = mixer
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixer = self.attn if hasattr(self, "attn") else self.mixer
        return self.mlp(mixer(x))


# ----------------------------------------------------------------------------- models

class SpikingNet(nn.Module):
    """What Max-Former and Max-ResNet share: T, the stage loop with optional activation
    checkpointing per stage (``checkpoint_stages``, for T=16 event training), and BN folding."""

    cfg: NetConfig
    checkpoint_stages: bool = False

    @property
    def T(self) -> int:
        return self.cfg.T

    def stages(self) -> list[nn.Module]:
        raise NotImplementedError

    def run_stages(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages():
            x = checkpoint(stage, x, use_reentrant=False) if self.checkpoint_stages and self.training else stage(x)
        return x

    def fuse(self) -> "SpikingNet":
        """Fold every batch norm into the convolution before it, for inference (eval mode).

        The fused model computes the same function with fewer passes over the activations, but its
        state dict no longer has BN entries: load checkpoints before fusing.
        """
        if self.training:
            raise RuntimeError("fuse() folds running BN statistics: call model.eval() first")
        for module in list(self.modules()):
            children = list(module.named_children())
            for (_, conv), (bn_name, bn) in zip(children, children[1:]):
                if isinstance(conv, (nn.Conv1d, nn.Conv2d)) and isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    fold_bn_into_conv(conv, bn)
                    setattr(module, bn_name, nn.Identity())
        return self


@torch.no_grad()
def fold_bn_into_conv(conv: nn.Conv1d | nn.Conv2d, bn: nn.BatchNorm1d | nn.BatchNorm2d) -> None:
    """``BN(conv(x)) = conv'(x)`` with ``w' = w * g / s`` and ``b' = (b - mean) * g / s + beta``,
    ``s = sqrt(var + eps)``."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight.mul_(scale.reshape(-1, *[1] * (conv.weight.dim() - 1)))
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)


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


@dataclass
class MaxFormerConfig(NetConfig):
    """A hierarchical spiking transformer, one entry per stage (Table 1, Tables 4 and 7).

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
                             f"{cfg.dims}, {cfg.depths}, {cfg.embeds}, {cfg.mixers}")
        self.cfg = cfg
        neuron = NeuronSpec(cfg.neuron, cfg.tau, cfg.neuron_backend)
        self.stride = 1
        for i, (cin, dim, embed) in enumerate(zip((cfg.in_channels, *cfg.dims), cfg.dims, cfg.embeds), 1):
            embed = "orig_later" if embed == "orig" and i > 1 else embed
            if embed not in EMBEDDINGS:
                raise ValueError(f"unknown patch embedding {embed!r}; use one of {sorted(EMBEDDINGS)}")
            setattr(self, f"patch_embed{i}", EMBEDDINGS[embed](cin, dim, neuron))
            self.stride *= getattr(self, f"patch_embed{i}").stride
        for i, (dim, depth, mixer) in enumerate(zip(cfg.dims, cfg.depths, cfg.mixers), 1):
            setattr(self, f"stage{i}", nn.ModuleList(
                Block(make_mixer(mixer, dim, cfg.num_heads, neuron), MLP(dim, int(dim * cfg.mlp_ratio), neuron))
                for _ in range(depth)))
        self.head_lif = neuron()
        self.head = nn.Linear(cfg.dims[-1], cfg.num_classes)
        init_weights(self, cfg.init)

    def stages(self) -> list[nn.Module]:
        """Stage i = ``patch_embed{i}`` followed by the blocks of ``stage{i}``."""
        return [nn.Sequential(getattr(self, f"patch_embed{i}"), *getattr(self, f"stage{i}"))
                for i in range(1, len(self.cfg.dims) + 1)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Time-first input ``[T, B, C, H, W]`` -> final membrane ``[T, B, D, H/s, W/s]``."""
        return self.run_stages(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_time_first(x, self.cfg.T, self.cfg.in_channels, self.stride)
        x = self.forward_features(x).flatten(3).mean(3)     # [T, B, D]
        return self.head(self.head_lif(x)).mean(0)          # [B, classes]


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


# ----------------------------------------------------------------------------- Max-ResNet

class BasicBlock(nn.Module):
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[0]
        y = unfold(self.pool(self.bn1(self.conv1(fold(self.spike1(x))))), T)
        y = self.bn2(self.conv2(fold(self.spike2(y))))
        identity = fold(x) if self.downsample is None else self.downsample(x)
        return unfold(y + identity, T)


@dataclass
class MaxResNetConfig(NetConfig):
    """Max-ResNet-18: ``layers`` blocks per stage of ``widths`` channels after a 64-channel stem."""

    layers: tuple[int, ...] = (3, 3, 2)
    widths: tuple[int, ...] = (128, 256, 512)


class MaxResNet(SpikingNet):
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
        cin = 64
        for i, (n, width) in enumerate(zip(cfg.layers, cfg.widths), 1):
            blocks = [BasicBlock(cin if j == 0 else width, width, downsample=i > 1 and j == 0, neuron=neuron)
                      for j in range(n)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            cin = width
        self.spike = neuron()
        self.fc1 = nn.Linear(cin, cfg.num_classes)
        self.stride = 2 ** (len(cfg.layers) - 1)

    def stages(self) -> list[nn.Module]:
        return [getattr(self, f"layer{i}") for i in range(1, len(self.cfg.layers) + 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_time_first(x, self.cfg.T, self.cfg.in_channels, self.stride)
        x = self.run_stages(unfold(self.bn1(self.conv1(fold(x))), x.shape[0]))
        x = self.spike(x).mean((3, 4))                     # [T, B, C]
        return self.fc1(x).mean(0)                         # [B, classes]


# ----------------------------------------------------------------------------- the zoo

def _imagenet(dim: int, embeds: tuple[str, ...], mixers: tuple[str, ...]) -> MaxFormerConfig:
    """ImageNet "10-D": widths D/4, D/2, D with 1, 2, 7 blocks, D/64 heads, T=1 (Table 3)."""
    return MaxFormerConfig(dims=(dim // 4, dim // 2, dim), depths=(1, 2, 7), embeds=embeds, mixers=mixers,
                           num_heads=dim // 64, num_classes=1000, img_size=224, T=1, init="imagenet")


_EVENT = dict(dims=(128, 256), depths=(1, 1), mlp_ratio=1.0, num_heads=16, in_channels=2, img_size=128, T=16)
_QK_CIFAR = dict(embeds=("orig", "1max", "1max"), mixers=("qk", "qk", "ssa"))
_QK_EVENT = dict(_EVENT, embeds=("max_plus", "1max"), mixers=("qk", "ssa"))
_MF_EVENT = dict(_EVENT, embeds=("max_plus", "max"), mixers=("dwc3", "ssa"))
_RESNET_2222 = dict(layers=(2, 2, 2, 2), widths=(64, 128, 256, 512))

MODELS: dict[str, MaxFormerConfig | MaxResNetConfig] = {
    "max_former_cifar10": MaxFormerConfig(),
    "max_former_cifar100": MaxFormerConfig(num_classes=100),
    "max_former_cifar10dvs": MaxFormerConfig(**_MF_EVENT, num_classes=10),
    "max_former_dvsgesture": MaxFormerConfig(**_MF_EVENT, num_classes=11),
    **{f"max_former_10_{d}": _imagenet(d, ("orig_imagenet", "max", "max"), ("dwc7", "dwc5", "ssa"))
       for d in (384, 512, 768)},
    "ms_qkformer_cifar10": MaxFormerConfig(**_QK_CIFAR),
    "ms_qkformer_cifar100": MaxFormerConfig(**_QK_CIFAR, num_classes=100),
    "ms_qkformer_cifar10dvs": MaxFormerConfig(**_QK_EVENT, num_classes=10),
    "ms_qkformer_dvsgesture": MaxFormerConfig(**_QK_EVENT, num_classes=11),
    **{f"ms_qkformer_10_{d}": _imagenet(d, ("qk_init", "qk_stage", "qk_stage"), ("qk", "qk", "ssa"))
       for d in (384, 512, 768)},
    "max_resnet18_cifar10": MaxResNetConfig(),
    "max_resnet18_cifar100": MaxResNetConfig(num_classes=100),
    "max_resnet18_2222_cifar10": MaxResNetConfig(**_RESNET_2222),
    "max_resnet18_2222_cifar100": MaxResNetConfig(**_RESNET_2222, num_classes=100),
    # Small Max-Former for the offline default dataset (2x24x24 event frames, T=4): trains on a CPU in minutes.
    "max_former_tiny": MaxFormerConfig(dims=(16, 32, 64), depths=(1, 1, 1), embeds=("orig", "max", "max"),
                                       mixers=("dwc3", "dwc3", "dwc3"), mlp_ratio=2.0, in_channels=2,
                                       img_size=24, num_heads=4),
}


def list_models() -> list[str]:
    """Every name :func:`create_model` accepts; ``<name>_ann`` is the non-spiking (ReLU) twin."""
    return sorted(MODELS) + sorted(f"{name}_ann" for name in MODELS)


SPEC_KEYS = {"embed": "embeds", "mixer": "mixers", "depth": "depths", "dim": "dims",
             "mlp": "mlp_ratio", "heads": "num_heads", "layers": "layers", "widths": "widths"}


def parse_spec(spec: str) -> dict[str, object]:
    """Parse an ablation spec such as ``"embed=orig,max,max mixer=id,dwc3,ssa depth=1,1,2"`` into
    config overrides (Tables 4 and 7). Keys: ``embed mixer depth dim mlp heads layers widths``."""
    out: dict[str, object] = {}
    for item in spec.split():
        key, sep, value = item.partition("=")
        if not sep or key not in SPEC_KEYS:
            raise ValueError(f"bad spec item {item!r}; write key=value with key in {sorted(SPEC_KEYS)}")
        parts = value.split(",")
        if key in ("embed", "mixer"):
            out[SPEC_KEYS[key]] = tuple(parts)
        elif key in ("mlp",):
            out[SPEC_KEYS[key]] = float(value)
        elif key == "heads":
            out[SPEC_KEYS[key]] = int(value)
        else:
            out[SPEC_KEYS[key]] = tuple(int(p) for p in parts)
    return out


def create_model(name: str, spec: str | None = None, **overrides) -> nn.Module:
    """Build a model of the zoo by name (:func:`list_models`), with config overrides such as
    ``T``, ``num_classes``, ``in_channels``, ``img_size``, ``neuron`` (``lif``/``if``/``relu``),
    ``neuron_backend``, ``dims``, ``embeds``, ``mixers``, ``width`` (the last stage's width D of
    "4-384"; earlier stages scale with it), and/or an ablation ``spec`` string."""
    base = name[: -len("_ann")] if name.endswith("_ann") else name
    if base not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    if name.endswith("_ann"):
        overrides.setdefault("neuron", "relu")
    if spec:
        overrides = {**parse_spec(spec), **overrides}
    config = MODELS[base]
    if "width" in overrides and isinstance(config, MaxFormerConfig):  # the paper's "4-384": last width D
        width = overrides.pop("width")
        dims = overrides.get("dims", config.dims)
        overrides["dims"] = tuple(d * width // dims[-1] for d in dims)
    valid = {f.name for f in fields(config)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"unknown override(s) {unknown} for {name!r}; valid: {sorted(valid)}")
    config = replace(config, **overrides)
    return MaxFormer(config) if isinstance(config, MaxFormerConfig) else MaxResNet(config)


# ----------------------------------------------------------------------------- official checkpoints

# Known older key names of the released checkpoints -> the current names used here.
KEY_ALIASES = ((".mixer.conv5.", ".mixer.conv."), (".mixer.conv5_bn.", ".mixer.conv_bn."))


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model: lists missing, unexpected and mis-shaped tensors."""


def _read_checkpoint(checkpoint: str | Path | Mapping, allow_pickle: bool) -> Mapping:
    if isinstance(checkpoint, Mapping):
        return checkpoint
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as err:
        if allow_pickle:
            raise
        raise ValueError(
            f"{path} holds pickled Python objects besides tensors (for example training arguments), so it "
            f"was not loaded with torch.load(weights_only=True). Unpickling can run arbitrary code: only if "
            f"you trust the file's source, pass allow_pickle=True (train.py: --allow-pickle). ({err})") from None


def official_state_dict(checkpoint: str | Path | Mapping, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of an official checkpoint: unwraps ``{"model": ...}`` / ``{"state_dict": ...}``,
    strips DDP's ``module.`` prefix and renames known older keys (:data:`KEY_ALIASES`)."""
    sd = _read_checkpoint(checkpoint, allow_pickle)
    for wrapper in ("model", "state_dict", "model_ema"):
        if isinstance(sd.get(wrapper), Mapping):
            sd = sd[wrapper]
            break
    out = {}
    for key, value in sd.items():
        if not torch.is_tensor(value):
            raise ValueError(f"checkpoint entry {key!r} is a {type(value).__name__}, not a tensor")
        key = key.removeprefix("module.")
        for old, new in KEY_ALIASES:
            key = key.replace(old, new)
        out[key] = value
    return out


def load_official(model: nn.Module, checkpoint: str | Path | Mapping, allow_pickle: bool = False) -> nn.Module:
    """Load the authors' weights (a path or a state dict) into ``model``, strictly.

    Keys are matched by name; a checkpoint that uses another naming scheme (fewer than half of its
    names are ours, as in older releases) is matched by position, as the authors' own ImageNet test
    script does, provided it has exactly as many tensors as the model. Any missing, unexpected or mis-shaped tensor raises
    :class:`CheckpointMismatchError` listing them all.
    """
    sd = official_state_dict(checkpoint, allow_pickle)
    own = model.state_dict()
    if len(sd) == len(own) and 2 * len(set(sd) & set(own)) < len(own):  # another naming scheme
        sd = dict(zip(own, sd.values()))
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    misshaped = [f"{k}: checkpoint {list(sd[k].shape)} vs model {list(own[k].shape)}"
                 for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or misshaped:
        lines = [f"checkpoint does not fit {type(model).__name__} ({len(sd)} tensors vs {len(own)})"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if items:
                lines.append(f"{title} ({len(items)}): " + ", ".join(items))
        raise CheckpointMismatchError("\n".join(lines))
    model.load_state_dict(sd, strict=True)
    return model
