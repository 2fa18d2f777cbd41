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
- ``triton``: the fused algorithm as two Triton kernels (all T steps per launch), CUDA only.

``auto`` picks ``triton`` for CUDA tensors when Triton imports, else ``fused``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


def sigmoid_surrogate(grad: torch.Tensor, x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Chain rule through the sigmoid surrogate: ``grad * alpha * s * (1 - s)``, ``s = sigmoid(alpha x)``.

    The paper's choice (section 4.1, alpha = 4); ``x = H - v_threshold``.
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
BACKENDS = ("auto", "torch", "fused", "triton")


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
        return not math.isinf(self.tau)


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


def neuron_sequence(x: torch.Tensor, d: Dynamics, backend: str = "auto") -> torch.Tensor:
    """Spikes ``[T, ...]`` of a LIF/IF layer (dynamics ``d``) for input ``[T, ...]``."""
    if backend in ("auto", "torch"):
        return reference_sequence(x, d)
    raise ValueError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")


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
