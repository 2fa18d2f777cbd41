"""Multi-step spiking neurons over time-first tensors ``[T, ...]`` (paper section 3.1).

A LIF neuron charges, fires and resets at every step ``t`` (section 3.1, eq. 1-3):

    H[t] = V[t-1] + (X[t] - (V[t-1] - v_reset)) / tau     (charge, decay_input=True)
    H[t] = V[t-1] - (V[t-1] - v_reset) / tau + X[t]       (charge, decay_input=False)
    S[t] = Heaviside(H[t] - v_threshold)                  (fire when H >= v_threshold)
    V[t] = H[t] * (1 - S[t]) + v_reset * S[t]             (hard reset, v_reset a number)
    V[t] = H[t] - v_threshold * S[t]                      (soft reset, v_reset=None)

(``v_reset`` reads as 0 in the charge when the reset is soft.) IF is the limit tau -> inf without
input decay, ``H[t] = V[t-1] + X[t]``. Below threshold the membrane is the first-order low-pass
filter of eq. 4-6, ``H(z) = (1 - b) / (1 - b z^-1)`` with ``b = 1 - 1/tau`` (``lif_transfer`` gives
its gain, ``membrane`` runs it); the IF membrane is the integrator ``1 / (1 - z^-1)``.

The Heaviside has no useful derivative, so the backward pass uses a surrogate ``dS/dH``
(``SURROGATES``): the paper's sigmoid (alpha = 4) or spikingjelly's arctan (alpha = 2).

Every forward starts from a zero membrane (``v_reset`` for hard reset), so no ``reset_net`` is needed.
Four interchangeable backends (``BACKENDS``, plus ``auto``) compute the same numbers:

- ``torch``: the readable reference (``reference_sequence``), one step after another, plain autograd.
- ``fused``: the same loop without a graph (``kernels.fused_forward``) and a hand-written backward
  through time (``kernels.fused_backward``) in one autograd Function (``kernels.FusedSequence``); it
  saves only ``H`` for the backward.
- ``compiled``: ``fused`` through ``torch.compile`` (``kernels.compiled``), after a one-off compile
  per T and dynamics (cached on disk).
- ``triton``: the fused algorithm as two Triton kernels (``kernels.triton_kernels``), CUDA float32 only.

``auto`` picks ``triton`` for float32 CUDA tensors when Triton imports, else ``fused`` (no compile,
so tests and first runs start at once; pass ``backend="compiled"`` for long CPU runs).
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

import kernels


def sigmoid_surrogate(grad: torch.Tensor, x: torch.Tensor, alpha: float, out: torch.Tensor | None = None,
                      scratch: torch.Tensor | None = None) -> torch.Tensor:
    """Chain rule through the sigmoid surrogate: ``grad * alpha * s * (1 - s)``, ``s = sigmoid(alpha x)``.

    The paper's choice (alpha = 4, docs/reference/models.md "LIF"); ``x = H - v_threshold``. Computed
    in place into ``out`` with ``s`` in ``scratch`` (both made when not given), in the same order of
    operations, so the bits do not depend on whether buffers are passed (``1 - s`` is ``-s + 1`` exactly).
    """
    s = torch.mul(x, alpha, out=scratch).sigmoid_()
    out = torch.mul(grad, alpha, out=out).mul_(s)
    return out.mul_(s.neg_().add_(1))


def atan_surrogate(grad: torch.Tensor, x: torch.Tensor, alpha: float, out: torch.Tensor | None = None,
                   scratch: torch.Tensor | None = None) -> torch.Tensor:
    """Chain rule through the arctan surrogate: ``grad * (alpha/2) / (1 + (pi/2 * alpha * x)^2)``.

    spikingjelly's ``ATan`` convention (alpha = 2 by default); ``x = H - v_threshold``. Buffers as in
    :func:`sigmoid_surrogate`.
    """
    denominator = torch.mul(x, math.pi / 2 * alpha, out=scratch).pow_(2).add_(1)
    return torch.mul(grad, alpha / 2, out=out).div_(denominator)


# name -> (chain rule through the surrogate: grad, x, alpha[, out, scratch], its default alpha)
SURROGATES: dict[str, tuple[Callable[..., torch.Tensor], float]] = {
    "sigmoid": (sigmoid_surrogate, 4.0),
    "atan": (atan_surrogate, 2.0),
}
BACKENDS = ("auto", "torch", "fused", "compiled", "triton")


def check_backend(backend: str) -> str:
    """``backend`` if it is one of ``BACKENDS``, else ValueError naming them."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
    return backend


@dataclass(unsafe_hash=True)
class Dynamics:
    """Everything that defines a neuron's dynamics; ``tau = inf`` with ``decay_input=False`` is IF.

    ``alpha=None`` takes the surrogate's own default (``SURROGATES``). Checked on construction.
    """

    tau: float = 2.0
    v_threshold: float = 1.0
    v_reset: float | None = 0.0
    decay_input: bool = True
    detach_reset: bool = True
    surrogate: str = "sigmoid"
    alpha: float | None = None

    def __post_init__(self) -> None:
        if not self.tau >= 1:
            raise ValueError(f"tau must be >= 1 (decay b = 1 - 1/tau in [0, 1)), got {self.tau!r}")
        if self.surrogate not in SURROGATES:
            raise ValueError(f"unknown surrogate {self.surrogate!r}; choose one of {sorted(SURROGATES)}")
        self.tau, self.v_threshold = float(self.tau), float(self.v_threshold)
        self.alpha = SURROGATES[self.surrogate][1] if self.alpha is None else float(self.alpha)

    def charge(self, v: torch.Tensor, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """One charge step ``H[t]`` from ``V[t-1]`` and ``X[t]`` (eq. 1), written into ``out`` if given
        (outside autograd; ``out`` may be ``x`` itself).

        With the paper's dynamics (input decay, rest 0) and ``out``, the step works in place in ``out``
        with no temporaries: the same operations in the same order, so the same bits (float addition
        commutes exactly, so ``tmp + v`` is ``v + tmp``), and ``x`` is read before ``out`` is written.
        """
        if not self.leaky:
            return torch.add(v, x, out=out)
        above_rest = v if self.v_rest == 0 else v - self.v_rest  # v - 0.0 is v, bit for bit: one pass fewer
        if not self.decay_input:
            return torch.add(v - above_rest / self.tau, x, out=out)
        if out is None:
            return v + (x - above_rest) / self.tau
        return torch.sub(x, above_rest, out=out).div_(self.tau).add_(v)

    @property
    def surrogate_grad(self) -> Callable[..., torch.Tensor]:
        """The chain rule through the surrogate (``SURROGATES``): ``(grad, x, alpha[, out, scratch])``."""
        return SURROGATES[self.surrogate][0]

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


def reference_sequence(x: torch.Tensor, d: Dynamics) -> torch.Tensor:
    """Spikes ``[T, ...]`` for input ``[T, ...]``, step by step (eq. 1-3); autograd records every operation."""
    v = torch.full_like(x[0], d.v_rest)
    spikes = []
    for x_t in x.unbind(0):
        h = d.charge(v, x_t)
        s = SpikeFunction.apply(h - d.v_threshold, d.surrogate, d.alpha)
        r = s.detach() if d.detach_reset else s
        v = h - r * d.v_threshold if d.v_reset is None else h * (1 - r) + r * d.v_reset
        spikes.append(s)
    return torch.stack(spikes)


# ----------------------------------------------------------------------------- the neuron modules

class Neuron(nn.Module):
    """Base class of every neuron module (spiking or not), so analysis hooks can find them.

    ``spiking``: the output is binary (0/1), so a layer reading it may keep it as bytes
    (``kernels.spike_conv``).
    """

    spiking: bool = True


class LIF(Neuron):
    """Multi-step leaky integrate-and-fire neuron (section 3.1); input and output ``[T, ...]``.

    ``v_reset`` a number: hard reset to it; ``None``: soft (subtractive) reset. ``detach_reset`` cuts
    the reset out of the backward graph. ``surrogate`` names an entry of ``SURROGATES``; ``alpha``
    defaults to that surrogate's own default. ``backend``: one of ``BACKENDS``. The dynamics live in
    ``self.dynamics`` (a :class:`Dynamics`).
    """

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 decay_input: bool = True, detach_reset: bool = True, surrogate: str = "sigmoid",
                 alpha: float | None = None, backend: str = "auto") -> None:
        super().__init__()
        self.dynamics = Dynamics(tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, alpha)
        self.backend = check_backend(backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return neuron_sequence(x, self.dynamics, self.backend)  # reference_sequence or kernels' fused algorithm

    def extra_repr(self) -> str:
        d = self.dynamics
        reset = "soft" if d.v_reset is None else f"v_reset={d.v_reset}"
        return (f"tau={d.tau}, v_threshold={d.v_threshold}, {reset}, decay_input={d.decay_input}, "
                f"detach_reset={d.detach_reset}, surrogate={d.surrogate}(alpha={d.alpha}), "
                f"backend={self.backend}")


class IF(LIF):
    """Multi-step integrate-and-fire neuron (no leak): ``H[t] = V[t-1] + X[t]``."""

    def __init__(self, v_threshold: float = 1.0, v_reset: float | None = 0.0, detach_reset: bool = True,
                 surrogate: str = "sigmoid", alpha: float | None = None, backend: str = "auto") -> None:
        super().__init__(tau=math.inf, v_threshold=v_threshold, v_reset=v_reset, decay_input=False,
                         detach_reset=detach_reset, surrogate=surrogate, alpha=alpha, backend=backend)


class ReLUNeuron(Neuron):
    """Non-spiking twin (the paper's "Max-Former (ANN)" row, Table 2): ``relu(x)``."""

    spiking = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


NEURON_KINDS = ("lif", "if", "relu")


@dataclass(frozen=True)
class NeuronSpec:
    """Which neuron every layer of a model uses, and the one way to build it.

    ``kind`` is ``lif``, ``if`` (``tau`` unused) or ``relu`` (the ANN twin: ``tau`` and ``backend``
    unused). Calling the spec builds one neuron; attention neurons pass ``v_threshold=0.5``.
    """

    kind: str = "lif"
    tau: float = 2.0
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.kind not in NEURON_KINDS:
            raise ValueError(f"unknown neuron kind {self.kind!r}; choose one of {sorted(NEURON_KINDS)}")
        check_backend(self.backend)

    @property
    def spiking(self) -> bool:
        return self.kind != "relu"

    def __call__(self, v_threshold: float = 1.0) -> Neuron:
        if self.kind == "lif":
            return LIF(tau=self.tau, v_threshold=v_threshold, backend=self.backend)
        if self.kind == "if":
            return IF(v_threshold=v_threshold, backend=self.backend)
        return ReLUNeuron()


def pick_backend(x: torch.Tensor, backend: str = "auto") -> str:
    """The backend that ``auto`` means for ``x``: ``triton`` for float32 CUDA tensors when Triton
    imports, else ``fused``. Other names are checked and returned unchanged."""
    check_backend(backend)
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
    # Both paths run on a contiguous copy: PyTorch's CPU kernels for strided and contiguous tensors may
    # round transcendentals (the sigmoid surrogate) differently, and the backends must agree bitwise.
    x = x.contiguous()
    if backend == "torch":
        return reference_sequence(x, d)
    # Elementwise in space, so every layer runs as [T, N]: one shape family, one compile per T and d.
    return kernels.FusedSequence.apply(x.reshape(x.shape[0], -1), d, backend).view(x.shape)


# ----------------------------------------------------------------------------- the sub-threshold membrane

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
        v = d.charge(v, x_t)
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
