"""Multi-step spiking neurons over time-first tensors ``[T, ...]`` (paper section 3.1).

A LIF neuron charges, fires and resets at every step ``t`` (section 3.1, eq. 1-3):

    H[t] = V[t-1] + (X[t] - (V[t-1] - v_reset)) / tau     (charge, decay_input=True)
    H[t] = V[t-1] - (V[t-1] - v_reset) / tau + X[t]       (charge, decay_input=False)
    S[t] = Heaviside(H[t] - v_threshold)                  (fire when H >= v_threshold)
    V[t] = H[t] * (1 - S[t]) + v_reset * S[t]             (hard reset, v_reset a number)
    V[t] = H[t] - v_threshold * S[t]                      (soft reset, v_reset=None)

(``v_reset`` reads as 0 in the charge when the reset is soft.) Below threshold the membrane is the
first-order low-pass filter of eq. 4-6, ``H(z) = (1 - b) / (1 - b z^-1)`` with ``b = 1 - 1/tau``;
``lif_transfer`` gives its gain and ``membrane`` runs it. IF is the limit tau -> inf without input
decay, ``H[t] = V[t-1] + X[t]``, an integrator ``1 / (1 - z^-1)``.

The Heaviside has no useful derivative, so the backward pass uses a surrogate ``dS/dH``
(``SURROGATES``): the paper's sigmoid (alpha = 4) or spikingjelly's arctan (alpha = 2).

Every forward starts from a zero membrane (``v_reset`` for hard reset), so no ``reset_net`` is needed.
Three interchangeable backends compute the same numbers:

- ``torch``: the readable reference, one step after another, differentiated by plain autograd.
- ``fused``: the same loop without a graph, and a hand-written backward through time in one autograd
  Function; it saves only ``H`` (one ``[T, ...]`` tensor in the input dtype) for the backward.
- ``compiled``: ``fused`` through ``torch.compile``: one loop per pass, near the memory floor on CPU,
  after a one-off compile (20-80 s cold on 2 cores per T and ``Dynamics``; cached on disk).
- ``triton``: the fused algorithm as two Triton kernels (all T steps per launch), CUDA float32 only.

``auto`` picks ``triton`` for float32 CUDA tensors when Triton imports, else ``fused`` (no compile,
so tests and first runs start at once; pass ``backend="compiled"`` for long CPU runs).
"""
from __future__ import annotations

import functools
import importlib.util
import math
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


def sigmoid_surrogate(grad: torch.Tensor, x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Chain rule through the sigmoid surrogate: ``grad * alpha * s * (1 - s)``, ``s = sigmoid(alpha x)``.

    The paper's choice (alpha = 4, MODELS.md "LIF"); ``x = H - v_threshold``.
    """
    s = torch.sigmoid(alpha * x)
    return grad * alpha * s * (1 - s)


def atan_surrogate(grad: torch.Tensor, x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Chain rule through the arctan surrogate: ``grad * (alpha/2) / (1 + (pi/2 * alpha * x)^2)``.

    spikingjelly's ``ATan`` convention (alpha = 2 by default); ``x = H - v_threshold``.
    """
    return grad * (alpha / 2) / (1 + (math.pi / 2 * alpha * x) ** 2)


SURROGATES: dict[str, tuple[Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor], float]] = {
    "sigmoid": (sigmoid_surrogate, 4.0),
    "atan": (atan_surrogate, 2.0),
}
BACKENDS = ("auto", "torch", "fused", "compiled", "triton")


@dataclass(frozen=True)
class Dynamics:
    """Everything that defines a neuron's dynamics; ``tau = inf`` with ``decay_input=False`` is IF."""

    tau: float = 2.0
    v_threshold: float = 1.0
    v_reset: float | None = 0.0
    decay_input: bool = True
    detach_reset: bool = True
    surrogate: str = "sigmoid"
    alpha: float = 4.0

    @property
    def v_rest(self) -> float:
        """Membrane value at the start of a forward and the charge's resting point."""
        return 0.0 if self.v_reset is None else self.v_reset

    @property
    def leaky(self) -> bool:
        return self.tau != math.inf  # (math.isinf would break torch.compile's graph)


class SpikeFunction(torch.autograd.Function):
    """``S = Heaviside(x)`` (1 where ``x >= 0``) forward, a surrogate derivative backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: str, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate, ctx.alpha = surrogate, alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return SURROGATES[ctx.surrogate][0](grad, x, ctx.alpha), None, None


def charge(v: torch.Tensor, x: torch.Tensor, d: Dynamics) -> torch.Tensor:
    """One charge step ``H[t]`` from ``V[t-1]`` and ``X[t]`` (eq. 1)."""
    if not d.leaky:
        return v + x
    if d.decay_input:
        return v + (x - (v - d.v_rest)) / d.tau
    return v - (v - d.v_rest) / d.tau + x


def membrane(x: torch.Tensor, tau: float = 2.0) -> torch.Tensor:
    """The sub-threshold membrane ``H[t]`` ``[T, ...]`` for input ``[T, ...]``: eq. 1 with no firing.

    ``tau = inf`` gives the IF integrator ``H[t] = H[t-1] + X[t]``; finite ``tau`` the LIF low-pass
    filter with input decay, ``H[t] = b H[t-1] + (1 - b) X[t]``, ``b = 1 - 1/tau`` (eq. 4-6). It is the
    same ``charge`` the neurons use, so its measured frequency response is the neurons' own.
    """
    d = Dynamics(tau=tau, decay_input=not math.isinf(tau))
    v = torch.zeros_like(x[0])
    hs = []
    for x_t in x.unbind(0):
        v = charge(v, x_t, d)
        hs.append(v)
    return torch.stack(hs)


def lif_transfer(w: torch.Tensor | float, tau: float = 2.0, stages: int = 1) -> torch.Tensor:
    """Gain ``|H(e^jw)|^stages`` of the sub-threshold membrane at angular frequency ``w`` (rad/step).

    LIF (eq. 6): ``|H| = (1 - b) / sqrt(1 - 2 b cos w + b^2)``, ``b = 1 - 1/tau``, a low-pass filter
    with unit gain at DC. IF (``tau = inf``): ``|1 / (1 - e^-jw)| = 1 / (2 sin(w/2))``. ``stages``
    cascaded layers multiply (eq. 12), so a deep SNN's membranes are ever more low-pass.
    """
    w = torch.as_tensor(w, dtype=torch.float64)
    if math.isinf(tau):
        gain = 1 / (2 * torch.sin(w / 2).abs())
    else:
        b = 1 - 1 / tau
        gain = (1 - b) / torch.sqrt(1 - 2 * b * torch.cos(w) + b * b)
    return gain ** stages


def reference_sequence(x: torch.Tensor, d: Dynamics) -> torch.Tensor:
    """Spikes ``[T, ...]`` for input ``[T, ...]``, step by step; autograd records every operation."""
    v = torch.full_like(x[0], d.v_rest)
    spikes = []
    for x_t in x.unbind(0):
        h = charge(v, x_t, d)
        s = SpikeFunction.apply(h - d.v_threshold, d.surrogate, d.alpha)
        r = s.detach() if d.detach_reset else s
        v = h - r * d.v_threshold if d.v_reset is None else h * (1 - r) + r * d.v_reset
        spikes.append(s)
    return torch.stack(spikes)


def fused_forward(x: torch.Tensor, d: Dynamics) -> tuple[torch.Tensor, torch.Tensor]:
    """All T steps without a graph: returns spikes and the charged membranes ``H``, both ``[T, ...]``."""
    v = torch.full_like(x[0], d.v_rest)
    spikes, hs = [], []
    for x_t in x.unbind(0):
        h = charge(v, x_t, d)
        fired = h >= d.v_threshold
        s = fired.to(x.dtype)
        v = h - s * d.v_threshold if d.v_reset is None else torch.where(fired, d.v_reset, h)
        spikes.append(s)
        hs.append(h)
    return torch.stack(spikes), torch.stack(hs)


def fused_backward(grad_spikes: torch.Tensor, h: torch.Tensor, d: Dynamics) -> torch.Tensor:
    """Backward through time from the saved ``H``: the input gradient ``[T, ...]``.

    Per step, from ``gv = dL/dV[t]`` (carried back from step t+1) and ``gs = dL/dS[t]``:
    ``dL/dS`` gains the reset's share unless it is detached, ``dL/dH = surrogate(dL/dS) + gv * dV/dH``,
    ``dL/dX = dL/dH / tau`` (input decay) and ``dL/dV[t-1] = dL/dH - dL/dH / tau``. The operations
    mirror what autograd does on ``reference_sequence`` (same operations, same order), so spikes and
    gradients are the same to the last bit.
    """
    surrogate = SURROGATES[d.surrogate][0]
    grad_x, gv = [], None
    for h_t, gs in zip(reversed(h.unbind(0)), reversed(grad_spikes.unbind(0))):
        x = h_t - d.v_threshold
        if gv is None:  # nothing flows back from the last step's reset
            gh = surrogate(gs, x, d.alpha)
        elif d.v_reset is None:
            if not d.detach_reset:
                gs = gs - gv * d.v_threshold
            gh = surrogate(gs, x, d.alpha) + gv
        else:
            if not d.detach_reset:
                gs = gs + gv * d.v_reset - gv * h_t  # summed in the order autograd sums
            gh = surrogate(gs, x, d.alpha) + gv * (1 - (x >= 0).to(h.dtype))
        leak = gh / d.tau if d.leaky else None
        grad_x.append(leak if d.decay_input else gh)
        gv = gh if leak is None else gh - leak
    return torch.stack(grad_x[::-1])


@functools.cache
def compiled(fn: Callable) -> Callable:
    """``fn`` through ``torch.compile`` (one fused loop over T), built once per process.

    Shapes are dynamic, so one compile serves every batch and channel count; each new T or
    ``Dynamics`` compiles once more (20-80 s cold on 2 CPU cores, seconds from the on-disk cache), and
    past dynamo's recompile limit the function quietly runs eagerly. If the compiler itself fails
    (no C++ toolchain, say) the eager function is used for the rest of the process, with a warning.
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


class FusedSequence(torch.autograd.Function):
    """One autograd node for all T steps with a hand-written backward; saves only ``H``.

    ``kernels`` names the pair of functions doing the work: ``fused`` (``fused_forward`` /
    ``fused_backward`` eagerly), ``compiled`` (the same through ``torch.compile``) or ``triton``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, d: Dynamics, kernels: str) -> torch.Tensor:
        forward, _ = KERNELS[kernels]()
        spikes, h = forward(x, d)
        ctx.save_for_backward(h)
        ctx.dynamics, ctx.kernels = d, kernels
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor):
        (h,) = ctx.saved_tensors
        _, backward = KERNELS[ctx.kernels]()
        return backward(grad_spikes.contiguous(), h, ctx.dynamics), None, None


@functools.cache
def triton_kernels() -> tuple[Callable, Callable]:
    """Forward and backward of the fused algorithm as Triton kernels, each one launch for all T steps.

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

    def flags(d: Dynamics) -> dict:
        return dict(LEAKY=d.leaky, DECAY_INPUT=d.decay_input, SOFT=d.v_reset is None, BLOCK=block)

    def forward(x: torch.Tensor, d: Dynamics) -> tuple[torch.Tensor, torch.Tensor]:
        spikes, h = torch.empty_like(x), torch.empty_like(x)
        n = x[0].numel()
        forward_kernel[(triton.cdiv(n, block),)](x, spikes, h, n, x.shape[0], d.tau, d.v_threshold,
                                                 d.v_rest, **flags(d))
        return spikes, h

    def backward(grad_spikes: torch.Tensor, h: torch.Tensor, d: Dynamics) -> torch.Tensor:
        grad_x = torch.empty_like(h)
        n = h[0].numel()
        backward_kernel[(triton.cdiv(n, block),)](grad_spikes, h, grad_x, n, h.shape[0], d.tau,
                                                  d.v_threshold, d.v_rest, d.alpha, DETACH=d.detach_reset,
                                                  ATAN=d.surrogate == "atan", **flags(d))
        return grad_x

    return forward, backward


KERNELS: dict[str, Callable[[], tuple[Callable, Callable]]] = {
    "fused": lambda: (fused_forward, fused_backward),
    "compiled": lambda: (compiled(fused_forward), compiled(fused_backward)),
    "triton": triton_kernels,
}


def pick_backend(x: torch.Tensor, backend: str = "auto") -> str:
    """The backend that ``auto`` means for ``x``: ``triton`` for float32 CUDA tensors when Triton
    imports, else ``fused``. Other names are checked and returned unchanged."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
    if backend == "triton" and not (x.is_cuda and x.dtype == torch.float32):
        raise ValueError(f"backend 'triton' needs a float32 CUDA tensor, got {x.dtype} on {x.device}; "
                         "use backend='auto'")
    if backend != "auto":
        return backend
    if x.is_cuda and x.dtype == torch.float32 and importlib.util.find_spec("triton") is not None:
        return "triton"
    return "fused"


def neuron_sequence(x: torch.Tensor, d: Dynamics, backend: str = "auto") -> torch.Tensor:
    """Spikes ``[T, ...]`` of a LIF/IF layer (dynamics ``d``) for input ``[T, ...]``; see ``BACKENDS``."""
    backend = pick_backend(x, backend)
    if backend == "torch":
        return reference_sequence(x, d)
    # Elementwise in space, so every layer runs as [T, N]: one shape family, one compile per T and d.
    return FusedSequence.apply(x.contiguous().reshape(x.shape[0], -1), d, backend).view(x.shape)


def saved_bytes(fn: Callable[..., torch.Tensor], *args: torch.Tensor) -> int:
    """Bytes autograd keeps for the backward of ``fn(*args)``, each storage counted once.

    How the fused backends' memory saving is measured (tests and ``bench/bench_neurons.py``).
    """
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args)
    return sum(storages.values())


class Neuron(nn.Module):
    """Base class of every neuron module (spiking or not), so analysis hooks can find them."""


class LIF(Neuron):
    """Multi-step leaky integrate-and-fire neuron (section 3.1); input and output ``[T, ...]``.

    ``v_reset`` a number: hard reset to it; ``None``: soft (subtractive) reset. ``detach_reset`` cuts
    the reset out of the backward graph. ``surrogate`` names an entry of ``SURROGATES``; ``alpha``
    defaults to that surrogate's own default. ``backend``: one of ``BACKENDS``.
    """

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 decay_input: bool = True, detach_reset: bool = True, surrogate: str = "sigmoid",
                 alpha: float | None = None, backend: str = "auto") -> None:
        super().__init__()
        if not tau >= 1:
            raise ValueError(f"tau must be >= 1 (decay b = 1 - 1/tau in [0, 1)), got {tau!r}")
        if surrogate not in SURROGATES:
            raise ValueError(f"unknown surrogate {surrogate!r}; choose one of {sorted(SURROGATES)}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
        self.tau, self.v_threshold, self.v_reset = float(tau), float(v_threshold), v_reset
        self.decay_input, self.detach_reset, self.surrogate = decay_input, detach_reset, surrogate
        self.alpha = SURROGATES[surrogate][1] if alpha is None else float(alpha)
        self.backend = backend

    @property
    def dynamics(self) -> Dynamics:
        return Dynamics(self.tau, self.v_threshold, self.v_reset, self.decay_input,
                        self.detach_reset, self.surrogate, self.alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return neuron_sequence(x, self.dynamics, self.backend)

    def extra_repr(self) -> str:
        reset = "soft" if self.v_reset is None else f"v_reset={self.v_reset}"
        return (f"tau={self.tau}, v_threshold={self.v_threshold}, {reset}, decay_input={self.decay_input}, "
                f"detach_reset={self.detach_reset}, surrogate={self.surrogate}(alpha={self.alpha}), "
                f"backend={self.backend}")


class IF(LIF):
    """Multi-step integrate-and-fire neuron (no leak): ``H[t] = V[t-1] + X[t]``."""

    def __init__(self, v_threshold: float = 1.0, v_reset: float | None = 0.0, detach_reset: bool = True,
                 surrogate: str = "sigmoid", alpha: float | None = None, backend: str = "auto") -> None:
        super().__init__(math.inf, v_threshold, v_reset, False, detach_reset, surrogate, alpha, backend)


class ReLUNeuron(Neuron):
    """Non-spiking twin (the paper's "Max-Former (ANN)" row, Table 2): ``relu(x)``.

    Accepts and ignores the spiking neurons' arguments so ``make_neuron`` can swap it in anywhere.
    """

    def __init__(self, **_: object) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


NEURONS = {"lif": LIF, "if": IF, "relu": ReLUNeuron}


def make_neuron(kind: str = "lif", v_threshold: float = 1.0, **kwargs) -> nn.Module:
    """Build a neuron by name (``lif``, ``if`` or ``relu``); ``v_threshold`` 0.5 for attention.

    ``kwargs`` go to the class (``tau``, ``v_reset``, ``surrogate``, ``backend`` ...); IF drops ``tau``.
    """
    if kind not in NEURONS:
        raise ValueError(f"unknown neuron kind {kind!r}; choose one of {sorted(NEURONS)}")
    if kind == "if":
        kwargs.pop("tau", None)
    return NEURONS[kind](v_threshold=v_threshold, **kwargs)
