"""Fast paths the models call; none of them changes a number.

- :func:`compiled`: a function through ``torch.compile``, falling back to eager if the compiler fails;
- :func:`triton_kernels`: the fused LIF/IF algorithm of ``neurons.py`` as two Triton kernels (CUDA);
- :class:`SpikeConv`: a convolution whose input is binary spikes, saved as one byte per element;
- :class:`MaxPool`: a 3x3 max-pool whose backward keeps only the argmax indices;
- :func:`saved_bytes`: how much autograd keeps for a backward, the measure of all of the above.

This module does not import ``neurons.py``: the neuron kernels read the fields of a ``neurons.Dynamics``
(``tau``, ``v_threshold``, ``v_rest``, ``leaky``, ``decay_input``, ``v_reset``, ``detach_reset``,
``surrogate``, ``alpha``) from whatever object they are given.
"""
from __future__ import annotations

import functools
import warnings
from typing import Callable

import torch
from torch import nn


@functools.cache
def compiled(fn: Callable) -> Callable:
    """``fn`` through ``torch.compile`` (one fused loop over T), built once per process.

    Shapes are dynamic, so one compile serves every batch and channel count; each new T or neuron
    dynamics compiles once more (cached on disk), and past dynamo's recompile limit the function
    quietly runs eagerly. If the compiler itself fails (no C++ toolchain, say) the eager function is
    used for the rest of the process, with a warning.
    """
    current = [torch.compile(fn, dynamic=True)]

    def run(*args):
        try:
            return current[0](*args)
        except torch._dynamo.exc.BackendCompilerFailed as err:
            warnings.warn(f"torch.compile of {fn.__name__} failed ({err}); running it eagerly")
            current[0] = fn
            return fn(*args)

    return run


@functools.cache
def triton_kernels() -> tuple[Callable, Callable]:
    """Forward and backward of the fused neuron algorithm as Triton kernels, one launch for all T steps.

    Same contract as ``neurons.fused_forward`` / ``neurons.fused_backward``: ``forward(x, d)`` gives
    spikes and ``H`` for ``x`` ``[T, N]``; ``backward(grad_spikes, h, d)`` the input gradient.
    Triton is imported here, on first use, so CPU-only runs never touch it. Float32 only. Every
    program owns ``BLOCK`` neurons and walks the time axis keeping ``V`` (forward) or ``dL/dV``
    (backward) in registers; ``div_rn`` keeps the divisions IEEE-rounded like PyTorch's.
    """
    import triton
    import triton.language as tl

    @triton.jit
    def forward_kernel(x_ptr, s_ptr, h_ptr, n, T, tau, v_threshold, v_rest, LEAKY: tl.constexpr,
                       DECAY_INPUT: tl.constexpr, SOFT: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        v = tl.zeros([BLOCK], tl.float32) + v_rest
        for t in range(T):
            x = tl.load(x_ptr + t * n + offs, mask=mask, other=0.0)
            if LEAKY:
                if DECAY_INPUT:
                    h = v + tl.math.div_rn(x - (v - v_rest), tau)
                else:
                    h = v - tl.math.div_rn(v - v_rest, tau) + x
            else:
                h = v + x
            fired = h >= v_threshold
            s = fired.to(tl.float32)
            if SOFT:
                v = h - s * v_threshold
            else:
                v = tl.where(fired, v_rest, h)
            tl.store(s_ptr + t * n + offs, s, mask=mask)
            tl.store(h_ptr + t * n + offs, h, mask=mask)

    @triton.jit
    def backward_kernel(gs_ptr, h_ptr, gx_ptr, n, T, tau, v_threshold, v_rest, alpha,
                        LEAKY: tl.constexpr, DECAY_INPUT: tl.constexpr, SOFT: tl.constexpr,
                        DETACH: tl.constexpr, ATAN: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        gv = tl.zeros([BLOCK], tl.float32)  # dL/dV[T-1] = 0: nothing flows back from the last reset
        for i in range(T):
            t = T - 1 - i
            h = tl.load(h_ptr + t * n + offs, mask=mask, other=0.0)
            gs = tl.load(gs_ptr + t * n + offs, mask=mask, other=0.0)
            x = h - v_threshold
            if SOFT:
                if not DETACH:
                    gs = gs - gv * v_threshold
                direct = gv
            else:
                if not DETACH:
                    gs = gs + gv * v_rest - gv * h
                direct = tl.where(x >= 0, 0.0, gv)
            if ATAN:
                z = (1.5707963267948966 * alpha) * x
                gh = tl.math.div_rn(gs * (alpha / 2), 1 + z * z)
            else:
                sg = tl.math.div_rn(1.0, 1.0 + tl.exp(-(alpha * x)))
                gh = gs * alpha * sg * (1 - sg)
            gh = gh + direct
            if LEAKY:
                leak = tl.math.div_rn(gh, tau)
                gv = gh - leak
                gx = leak if DECAY_INPUT else gh
            else:
                gv = gh
                gx = gh
            tl.store(gx_ptr + t * n + offs, gx, mask=mask)

    block = 1024

    def flags(d) -> dict:
        return dict(LEAKY=d.leaky, DECAY_INPUT=d.decay_input, SOFT=d.v_reset is None, BLOCK=block)

    def forward(x: torch.Tensor, d) -> tuple[torch.Tensor, torch.Tensor]:
        spikes, h = torch.empty_like(x), torch.empty_like(x)
        n = x[0].numel()
        forward_kernel[(triton.cdiv(n, block),)](x, spikes, h, n, x.shape[0], d.tau, d.v_threshold,
                                                 d.v_rest, **flags(d))
        return spikes, h

    def backward(grad_spikes: torch.Tensor, h: torch.Tensor, d) -> torch.Tensor:
        grad_x = torch.empty_like(h)
        n = h[0].numel()
        backward_kernel[(triton.cdiv(n, block),)](grad_spikes, h, grad_x, n, h.shape[0], d.tau,
                                                  d.v_threshold, d.v_rest, d.alpha, DETACH=d.detach_reset,
                                                  ATAN=d.surrogate == "atan", **flags(d))
        return grad_x

    return forward, backward


def compute_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype a convolution of ``x`` with ``weight`` runs in: autocast's, when it is on, else the weight's."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return weight.dtype


class SpikeConv(torch.autograd.Function):
    """A convolution (``Conv1d``/``Conv2d``) of binary spikes ``x`` that keeps ``x`` as ``torch.bool``.

    Autograd's own convolution keeps its input in the compute dtype (4 bytes per element in float32,
    2 under AMP) for the weight gradient. Spikes are exactly 0 or 1 in every float dtype, so one byte
    holds them exactly and ``bool -> dtype`` rebuilds them bit for bit; the backward then calls the
    kernel autograd calls (``aten.convolution_backward``), so every gradient is bit-identical.
    Only for inputs known to be binary (a spiking neuron's output).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, conv: nn.Conv1d | nn.Conv2d, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        dtype = compute_dtype(x, weight)
        x, w = x.to(dtype), weight.to(dtype)
        b = None if bias is None else bias.to(dtype)
        n = w.dim() - 2
        ctx.geometry = (list(conv.stride), list(conv.padding), list(conv.dilation), False, [0] * n, conv.groups)
        ctx.dtype, ctx.bias_sizes = dtype, None if bias is None else list(bias.shape)
        ctx.save_for_backward(x.to(torch.bool), weight)
        with torch.autocast(x.device.type, enabled=False):
            return torch.ops.aten.convolution(x, w, b, *ctx.geometry)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        packed, weight = ctx.saved_tensors
        x = packed.to(ctx.dtype)
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[2], ctx.bias_sizes is not None and ctx.needs_input_grad[3]]
        gx, gw, gb = torch.ops.aten.convolution_backward(grad, x, weight.to(ctx.dtype), ctx.bias_sizes,
                                                         *ctx.geometry, mask)
        gw = None if gw is None else gw.to(weight.dtype)
        gb = None if gb is None else gb.to(weight.dtype)
        return gx, None, gw, gb


def spike_conv(conv: nn.Conv1d | nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for binary ``x``, keeping ``x`` as one byte per element for the backward (:class:`SpikeConv`).

    Without autograd (inference, or nothing needing a gradient) it is ``conv(x)`` itself.
    """
    if torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad):
        return SpikeConv.apply(x, conv, conv.weight, conv.bias)
    return conv(x)


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
    """``nn.MaxPool2d(3, stride, 1)`` that keeps only the argmax indices for the backward (:class:`MaxPoolFunction`)."""

    def __init__(self, stride: int) -> None:
        super().__init__(3, stride, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return MaxPoolFunction.apply(x, self.stride)
        return super().forward(x)


def saved_bytes(fn: Callable[..., torch.Tensor], *args: torch.Tensor) -> int:
    """Bytes autograd keeps for the backward of ``fn(*args)``, each storage counted once.

    How the memory savings of this module and of the fused neurons are measured (tests and bench/).
    """
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args)
    return sum(storages.values())
