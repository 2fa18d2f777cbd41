"""Frequency analysis of spiking networks: the measurements behind the paper's argument.

The paper (Fang et al., "Spiking Neural Networks Need High-Frequency Information", NeurIPS 2025)
argues that spiking neurons low-pass filter their input (section 3.1, eq. 4-6) and that the
feature maps of a Spiking Transformer lose high-frequency content layer by layer (Fig. 2), which
max-pooling and depth-wise convolution restore (Fig. 6). Its analysis code is not published; this
module measures both:

Temporal (section 3.1). The LIF membrane with input decay, ``V[t] = b V[t-1] + (1 - b) X[t]`` with
``b = 1 - 1/tau``, is the first-order filter ``H(z) = (1 - b) / (1 - b z^-1)``, so
``|H(e^jw)| = (1 - b) / sqrt(1 - 2 b cos w + b^2)``; the IF membrane ``V[t] = V[t-1] + X[t]`` is
the integrator ``|H(e^jw)| = 1 / (2 sin(w / 2))``. :func:`temporal_response` sets these beside the
measured sub-threshold response of a neuron module and the measured rate transfer of the spiking
neuron (a sinusoid in noise, spike counts averaged over trials).

Spatial (Fig. 2, Fig. 6). :class:`SpectrumProbe` hooks any set of modules of any model and, for
each, takes the 2-D FFT of its output feature maps over (H, W) and keeps

- ``log(1 + |F|)`` averaged over batch, channels and time steps; its values along the half
  diagonal, ``F[k, k]`` for ``k = 0 .. H/2``, minus the DC value give the *relative log amplitude*
  against normalised frequency ``w = 2 pi k / H`` in ``[0, pi]`` (the paper's Fourier plots);
- the *high-frequency share*: the fraction of spectral energy ``|F|^2`` (summed over all maps)
  whose radial frequency ``sqrt(w_h^2 + w_w^2)`` exceeds half Nyquist (``pi / 2``), the DC bin
  excluded from both numerator and denominator.

Each result says whether it measured spikes (every value 0 or 1) or membrane potentials.

Command line (``python spectrum.py --help``): ``temporal`` plots neuron frequency responses,
``spatial`` writes a Fig. 6 style comparison plus the per-layer high-frequency share of a model,
``compare`` sets a model beside its Avg-Pool variant. Each writes PNG figures and CSV tables.
"""
from __future__ import annotations

import argparse
import csv
import fnmatch
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from torch import nn
from tqdm import tqdm

from neurons import IF, LIF, Neuron


# ---------------------------------------------------------------------------------------------
# Temporal: frequency response of a neuron
# ---------------------------------------------------------------------------------------------

def lif_transfer(omega: torch.Tensor, tau: float) -> torch.Tensor:
    """``|H(e^jw)|`` of the sub-threshold LIF membrane (eq. 4-6, ``b = 1 - 1/tau``).

    ``tau = inf`` gives the IF membrane (an integrator, no input decay): ``1 / (2 sin(w/2))``.
    """
    omega = torch.as_tensor(omega, dtype=torch.float64)
    if math.isinf(tau):
        return 1.0 / (2.0 * torch.sin(omega / 2)).abs()
    b = 1.0 - 1.0 / tau
    return (1.0 - b) / torch.sqrt(1.0 - 2.0 * b * torch.cos(omega) + b * b)


def membrane(neuron: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Sub-threshold membrane trace ``[T, ...]`` of ``neuron`` driven by ``x`` ``[T, ...]``.

    Runs the neuron's own charge equation (``neuron.charge(v, x_t)``, as in ``neurons.LIF``) with
    firing switched off, starting from the resting potential.
    """
    if not hasattr(neuron, "charge"):
        raise TypeError(f"membrane() needs a neuron with a charge(v, x) method such as neurons.LIF "
                        f"or neurons.IF; got {type(neuron).__name__}")
    v_reset = getattr(neuron, "v_reset", None)
    v = torch.full_like(x[0], 0.0 if v_reset is None else v_reset)
    trace = []
    for x_t in x.unbind(0):
        v = neuron.charge(v, x_t)
        trace.append(v)
    return torch.stack(trace)


def tone_amplitude(signal: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """Amplitude of the component at angular frequency ``omega`` (per step) of ``signal [L, ..., F]``.

    The last dimension of ``signal`` pairs with ``omega [F]``; the length ``L`` should hold a whole
    number of periods of every ``omega`` so that DC and the other tones do not leak in.
    """
    t = torch.arange(signal.shape[0], dtype=torch.float64).view(-1, *([1] * (signal.dim() - 1)))
    phase = t * omega.to(torch.float64)
    re_part = (signal.to(torch.float64) * torch.cos(phase)).mean(0)
    im_part = (signal.to(torch.float64) * torch.sin(phase)).mean(0)
    edge = torch.sin(omega.to(torch.float64)).abs() < 1e-6  # DC and Nyquist tones are real: no factor 2
    return torch.where(edge, 1.0, 2.0) * torch.sqrt(re_part ** 2 + im_part ** 2)


@dataclass
class TemporalResponse:
    """Gain against frequency: theory, sub-threshold membrane and spike-rate transfer."""
    omega: torch.Tensor         # [F] angular frequency per time step, in (0, pi]
    theory: torch.Tensor        # [F] |H(e^jw)| of the membrane (eq. 4-6)
    subthreshold: torch.Tensor  # [F] measured membrane amplitude / input amplitude
    rate: torch.Tensor          # [F] measured trial-averaged spike-rate amplitude / input amplitude


@torch.no_grad()
def temporal_response(neuron: nn.Module, tau: float, n_freqs: int = 32, steps: int = 256,
                      warmup: int = 64, trials: int = 256, bias: float = 1.0, amplitude: float = 0.25,
                      noise: float = 0.5, seed: int = 0) -> TemporalResponse:
    """Measure a neuron's frequency response (section 3.1) beside the theory for time constant ``tau``.

    Frequencies are ``w_k = 2 pi k / steps``, ``n_freqs`` of them spread over ``(0, pi]``, so every
    tone fits a whole number of periods in the ``steps`` measured after ``warmup`` steps.
    Sub-threshold: ``x = amplitude * cos(w t)`` through :func:`membrane`. Rate: ``x = bias +
    amplitude * cos(w t) + noise * N(0, 1)`` through the spiking forward, spikes averaged over
    ``trials`` independent noise draws, then the tone's amplitude in that rate.
    """
    if steps < 2 * n_freqs:
        raise ValueError(f"steps={steps} cannot hold {n_freqs} distinct frequencies; use steps >= {2 * n_freqs}")
    k = torch.linspace(1, steps // 2, n_freqs, dtype=torch.float64).round().unique()
    omega = 2 * math.pi * k / steps                                      # [F]
    t = torch.arange(warmup + steps, dtype=torch.float64).unsqueeze(1)  # [L, 1]
    tone = amplitude * torch.cos(t * omega)                             # [L, F]
    sub = membrane(neuron, tone.float().unsqueeze(1)).squeeze(1)        # [L, F]
    gen = torch.Generator().manual_seed(seed)
    drive = bias + tone.float().unsqueeze(1) + noise * torch.randn(
        warmup + steps, trials, len(omega), generator=gen)               # [L, trials, F]
    rate = neuron(drive).mean(1)                                         # [L, F]
    measured = lambda s: tone_amplitude(s[warmup:], omega) / amplitude  # noqa: E731
    return TemporalResponse(omega, lif_transfer(omega, tau), measured(sub), measured(rate))


# ---------------------------------------------------------------------------------------------
# Spatial: spectra of feature maps
# ---------------------------------------------------------------------------------------------

def as_maps(x: torch.Tensor) -> torch.Tensor | None:
    """View a layer output as a stack of 2-D maps ``[M, H, W]``, or ``None`` if it has no spatial grid.

    5-D ``[T, B, C, H, W]``: the last two dimensions. 4-D: ``[T*B, C, H, W]`` when the last two
    sizes are equal, otherwise ``[T, B, C, N]`` tokens with ``N`` a square number. 3-D
    ``[T*B, C, N]`` tokens (Conv1d outputs) with ``N`` square. Anything else (e.g. the head's
    ``[T, B, C]``) has no grid.
    """
    if x.dim() == 5 or (x.dim() == 4 and x.shape[-1] == x.shape[-2]):
        return x.reshape(-1, x.shape[-2], x.shape[-1])
    if x.dim() in (3, 4):
        side = math.isqrt(x.shape[-1])
        if side > 1 and side * side == x.shape[-1]:
            return x.reshape(-1, side, side)
    return None


def is_binary(x: torch.Tensor) -> bool:
    """True when every value of ``x`` is 0 or 1 (a spike tensor)."""
    return bool(((x == 0) | (x == 1)).all())


def radial_frequency(h: int, w: int) -> torch.Tensor:
    """``sqrt(w_h^2 + w_w^2)`` of every bin of an unshifted ``h x w`` FFT, frequencies in ``[-pi, pi]``."""
    wh = 2 * math.pi * torch.fft.fftfreq(h, dtype=torch.float64).abs()
    ww = 2 * math.pi * torch.fft.fftfreq(w, dtype=torch.float64).abs()
    return torch.sqrt(wh[:, None] ** 2 + ww[None, :] ** 2)


def high_frequency_share(power: torch.Tensor) -> float:
    """Share of spectral energy above half Nyquist (radial frequency ``> pi/2``), DC excluded.

    ``power``: an unshifted power spectrum ``|F|^2`` of shape ``[H, W]`` (summed over maps).
    Returns NaN when all the energy sits at DC (a constant map).
    """
    radial = radial_frequency(*power.shape)
    power = power.to(torch.float64).clone()
    power[0, 0] = 0.0
    total = power.sum()
    if total <= 0:
        return float("nan")
    return float(power[radial > math.pi / 2].sum() / total)


def diagonal_profile(log_amp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Relative log amplitude along the half diagonal of an unshifted ``[H, W]`` log-amplitude map.

    Returns ``(omega, rel)``: ``omega = 2 pi k / H`` for ``k = 0 .. H//2`` (``0 .. pi``) and the map's
    values at ``(k, k)`` minus the DC value. Non-square maps step along both axes proportionally.
    """
    h, w = log_amp.shape
    n = min(h, w) // 2 + 1
    steps = torch.arange(n, dtype=torch.float64) / max(n - 1, 1)
    kh = (steps * (h // 2)).round().long()
    kw = (steps * (w // 2)).round().long()
    values = log_amp[kh, kw].to(torch.float64)
    return 2 * math.pi * kh.to(torch.float64) / h, values - values[0]


@dataclass
class LayerSpectrum:
    """The spatial spectrum of one module's outputs, accumulated over a dataset."""
    name: str
    kind: str                  # class name of the module
    signal: str                # "spikes" if every value seen was 0 or 1, else "membrane"
    shape: tuple[int, ...]     # (H, W) of the maps
    maps: int                  # number of 2-D maps averaged (batch x channels x time steps)
    omega: torch.Tensor        # [K] normalised frequency along the half diagonal, 0..pi
    rel_log_amp: torch.Tensor  # [K] log(1+|F|) along the diagonal minus its DC value
    hf_share: float            # spectral energy above half Nyquist, DC excluded
    order: int                 # position of the module's first call in the forward pass


@dataclass
class _Accumulator:
    kind: str
    order: int
    log_amp: torch.Tensor | None = None
    power: torch.Tensor | None = None
    maps: int = 0
    binary: bool = True

    def add(self, x: torch.Tensor) -> None:
        maps = as_maps(x.detach())
        if maps is None:
            return
        if self.log_amp is not None and maps.shape[-2:] != self.log_amp.shape:
            raise ValueError(f"a {self.kind} module was called on maps of size {tuple(maps.shape[-2:])} "
                             f"after {tuple(self.log_amp.shape)}; probe modules that see one size only")
        spec = torch.fft.fft2(maps.to(torch.float64)).abs()              # [M, H, W]
        log_amp, power = torch.log1p(spec).sum(0), (spec ** 2).sum(0)
        self.log_amp = log_amp if self.log_amp is None else self.log_amp + log_amp
        self.power = power if self.power is None else self.power + power
        self.maps += maps.shape[0]
        self.binary = self.binary and is_binary(maps)


class SpectrumProbe:
    """Forward hooks that accumulate the spatial spectra of named modules' outputs.

    Use as a context manager around forward passes; :meth:`results` gives one
    :class:`LayerSpectrum` per module that produced spatial maps, in call order.
    """

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise KeyError(f"no module named {missing} in {type(model).__name__}; "
                           f"see `python spectrum.py layers --model ...` for the names")
        self.modules = {n: modules[n] for n in names}
        self.acc: dict[str, _Accumulator] = {}
        self.handles: list = []

    def _hook(self, name: str) -> Callable:
        def hook(module: nn.Module, args, output) -> None:
            if isinstance(output, (tuple, list)):
                output = output[0]
            if name not in self.acc:
                self.acc[name] = _Accumulator(type(module).__name__, len(self.acc))
            self.acc[name].add(output)
        return hook

    def __enter__(self) -> "SpectrumProbe":
        self.handles = [m.register_forward_hook(self._hook(n)) for n, m in self.modules.items()]
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def results(self) -> list[LayerSpectrum]:
        out = []
        for name, a in sorted(self.acc.items(), key=lambda kv: kv[1].order):
            if a.maps == 0:
                continue
            omega, rel = diagonal_profile(a.log_amp / a.maps)
            out.append(LayerSpectrum(name, a.kind, "spikes" if a.binary else "membrane",
                                     tuple(a.log_amp.shape), a.maps, omega, rel,
                                     high_frequency_share(a.power), a.order))
        return out


@torch.no_grad()
def spatial_spectra(model: nn.Module, batches: Iterable[torch.Tensor], names: Sequence[str],
                    progress: bool = False) -> list[LayerSpectrum]:
    """Run ``model`` (in eval mode) over ``batches`` and return the spectra of the named modules."""
    model.eval()
    with SpectrumProbe(model, names) as probe:
        for x in tqdm(batches, desc="spectra", disable=not progress):
            model(x)
    return probe.results()


# ---------------------------------------------------------------------------------------------
# Choosing layers
# ---------------------------------------------------------------------------------------------

BLOCK_NAME = re.compile(r"^(patch_embed\d+|stage\d+\.\d+|conv1|layer\d+\.\d+)$")


def neuron_names(model: nn.Module) -> list[str]:
    """Names of every neuron module (spiking or not) of ``model``."""
    return [n for n, m in model.named_modules() if isinstance(m, Neuron)]


def block_names(model: nn.Module) -> list[str]:
    """Names of the embeddings and blocks (their outputs are membranes), as Max-Former/-ResNet name them."""
    return [n for n, _ in model.named_modules() if BLOCK_NAME.match(n)]


def fig6_names(model: nn.Module) -> dict[str, str]:
    """The first module of each kind the paper's Fig. 6 compares: spiking neuron, max-pool, DWC, SSA.

    Returns ``{label: module name}`` for the kinds the model has. The DWC is the mixer of a
    depth-wise-conv block (its output: conv + BN + input); the self-attention is the ``SSA`` module.
    """
    picks: dict[str, str] = {}
    tests = {
        "spiking neuron": lambda m: isinstance(m, (LIF, IF)),
        "max-pool": lambda m: isinstance(m, nn.MaxPool2d),
        "avg-pool": lambda m: isinstance(m, nn.AvgPool2d),
        "DWC": lambda m: any(isinstance(c, nn.Conv2d) and c.groups > 1 and c.groups == c.in_channels
                             for c in m.children()) and not isinstance(m, nn.Conv2d),
        "self-attention": lambda m: type(m).__name__ == "SSA",
    }
    for name, module in model.named_modules():
        for label, test in tests.items():
            if label not in picks and name and test(module):
                picks[label] = name
    return picks


def select_layers(model: nn.Module, spec: str) -> list[str]:
    """Module names from a spec: ``neurons``, ``blocks``, ``fig6``, or comma-separated glob patterns.

    Groups and patterns can be mixed: ``blocks,stage3.*.attn``.
    """
    all_names = [n for n, _ in model.named_modules() if n]
    chosen: list[str] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        if part == "neurons":
            found = neuron_names(model)
        elif part == "blocks":
            found = block_names(model)
        elif part == "fig6":
            found = list(fig6_names(model).values())
        else:
            found = [n for n in all_names if fnmatch.fnmatchcase(n, part)]
        if not found:
            raise ValueError(f"layer spec {part!r} matches no module of {type(model).__name__}; "
                             f"list the names with `python spectrum.py layers --model ...`")
        chosen += [n for n in found if n not in chosen]
    return chosen
