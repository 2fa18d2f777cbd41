"""Multi-step spiking neurons over time-first tensors ``[T, ...]``.

A LIF neuron (paper section 3.1, eq. 1-3) charges, fires and resets at every step ``t``:

    H[t] = V[t-1] + (X[t] - (V[t-1] - v_reset)) / tau     (decay_input=True)
    S[t] = Heaviside(H[t] - v_threshold)                    (fires when H >= v_threshold)
    V[t] = H[t] * (1 - S[t]) + v_reset * S[t]               (hard reset)
    V[t] = H[t] - v_threshold * S[t]                        (soft reset, v_reset=None)

The sub-threshold membrane is the first-order low-pass filter ``H(z) = (1-b) / (1 - b z^-1)``,
``b = 1 - 1/tau`` (eq. 4-6). IF is the limit tau -> inf without input decay: ``H[t] = V[t-1] + X[t]``.

Every forward starts from a zero membrane (``v_reset`` for hard reset), so no ``reset_net`` is needed.
"""
from __future__ import annotations

import torch
from torch import nn


class SigmoidSurrogate(torch.autograd.Function):
    """Heaviside forward; backward ``alpha * s * (1 - s)``, ``s = sigmoid(alpha * x)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(ctx.alpha * x)
        return grad * ctx.alpha * s * (1 - s), None


class Neuron(nn.Module):
    """Base class of every neuron module (spiking or not), so analysis hooks can find them."""


class LIF(Neuron):
    """Multi-step leaky integrate-and-fire neuron; input and output ``[T, ...]``."""

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 decay_input: bool = True, detach_reset: bool = True, alpha: float = 4.0) -> None:
        super().__init__()
        self.tau, self.v_threshold, self.v_reset = tau, v_threshold, v_reset
        self.decay_input, self.detach_reset, self.alpha = decay_input, detach_reset, alpha

    def charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        v_rest = 0.0 if self.v_reset is None else self.v_reset
        if self.decay_input:
            return v + (x - (v - v_rest)) / self.tau
        return v - (v - v_rest) / self.tau + x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = torch.full_like(x[0], 0.0 if self.v_reset is None else self.v_reset)
        spikes = []
        for x_t in x.unbind(0):
            h = self.charge(v, x_t)
            s = SigmoidSurrogate.apply(h - self.v_threshold, self.alpha)
            r = s.detach() if self.detach_reset else s
            if self.v_reset is None:
                v = h - r * self.v_threshold
            else:
                v = h * (1 - r) + r * self.v_reset
            spikes.append(s)
        return torch.stack(spikes)


class IF(LIF):
    """Multi-step integrate-and-fire neuron (no leak): ``H[t] = V[t-1] + X[t]``."""

    def __init__(self, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 detach_reset: bool = True, alpha: float = 4.0) -> None:
        super().__init__(float("inf"), v_threshold, v_reset, False, detach_reset, alpha)

    def charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return v + x


class ReLUNeuron(Neuron):
    """Non-spiking twin (the paper's "Max-Former (ANN)" row, Table 2): ``relu(x)``."""

    def __init__(self, **_: object) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


NEURONS = {"lif": LIF, "if": IF, "relu": ReLUNeuron}


def make_neuron(kind: str = "lif", v_threshold: float = 1.0, **kwargs) -> nn.Module:
    """Build a neuron by name (``lif``, ``if`` or ``relu``); ``v_threshold`` 0.5 for attention."""
    if kind not in NEURONS:
        raise ValueError(f"unknown neuron kind {kind!r}; choose one of {sorted(NEURONS)}")
    if kind == "if":
        kwargs.pop("tau", None)
    return NEURONS[kind](v_threshold=v_threshold, **kwargs)
