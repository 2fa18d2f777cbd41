"""Frequency analysis of spiking networks: the measurements behind the paper's argument.

The paper (Fang et al., "Spiking Neural Networks Need High-Frequency Information", NeurIPS 2025)
argues that spiking neurons low-pass filter their input (section 3.1, eq. 4-6) and that the
feature maps of a Spiking Transformer lose high-frequency content layer by layer (Fig. 2), which
max-pooling and depth-wise convolution restore (Fig. 6). Its analysis code is not published; this
module measures both:

Temporal (section 3.1). The LIF membrane with input decay, ``V[t] = b V[t-1] + (1 - b) X[t]`` with
``b = 1 - 1/tau``, is the first-order filter ``H(z) = (1 - b) / (1 - b z^-1)``, so
``|H(e^jw)| = (1 - b) / sqrt(1 - 2 b cos w + b^2)``; the IF membrane ``V[t] = V[t-1] + X[t]`` is
the integrator ``|H(e^jw)| = 1 / (2 sin(w / 2))`` (``neurons.lif_transfer``).
:func:`temporal_response` sets these beside the measured sub-threshold response
(``neurons.membrane``) and the measured rate transfer of the spiking neuron module (a sinusoid in
noise, spike counts averaged over trials).

Spatial (Fig. 2, Fig. 6). :class:`SpectrumProbe` hooks any set of modules of any model and, for
each, takes the 2-D FFT of its output feature maps over (H, W) and keeps

- ``log(1 + |F|)`` averaged over batch, channels and time steps; its values along the half
  diagonal, ``F[k, k]`` for ``k = 0 .. H/2``, minus the DC value give the *relative log amplitude*
  against normalised frequency ``w = 2 pi k / H`` in ``[0, pi]`` (the paper's Fourier plots);
- the *high-frequency share*: the fraction of spectral energy ``|F|^2`` (summed over all maps)
  whose radial frequency ``sqrt(w_h^2 + w_w^2)`` exceeds half Nyquist (``pi / 2``), the DC bin
  excluded from both numerator and denominator.

Each result says whether it measured spikes (every value 0 or 1), membrane potentials, or a
silent layer (all zero: no spectrum, share NaN).

Command line (``python spectrum.py --help``): ``temporal`` plots neuron frequency responses,
``spatial`` writes a Fig. 6 style comparison plus the per-layer high-frequency share of a model,
``compare`` sets a model beside its Avg-Pool variant, both trained or both untrained. Each writes
PNG figures and CSV tables. Which model and weights are analysed (a checkpoint's own config, the
checkpoints shipped in ``docs/checkpoints/``, or ``--untrained``) is ``analysis_cli.py``'s part.
"""
from __future__ import annotations

import argparse
import fnmatch
import math
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle
from tqdm import tqdm

import maxformer
import zoo
from analysis_cli import Hooks, UsageError, add_model_args, checkpoint_for, is_binary, prepare, run_command, write_csv
from neurons import IF, LIF, Neuron, lif_transfer, membrane

if TYPE_CHECKING:  # annotations only; matplotlib is imported when a figure is drawn
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


# ---------------------------------------------------------------------------------------------
# Temporal: frequency response of a neuron
# ---------------------------------------------------------------------------------------------

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
def temporal_response(neuron: nn.Module, n_freqs: int = 32, steps: int = 256, warmup: int = 64,
                      trials: int = 256, bias: float = 1.0, amplitude: float = 0.25, noise: float = 0.5,
                      seed: int = 0) -> TemporalResponse:
    """Measure a neuron module's frequency response (section 3.1) beside the theory for its ``tau``.

    Frequencies are ``w_k = 2 pi k / steps``, ``n_freqs`` of them spread over ``(0, pi]``, so every
    tone fits a whole number of periods in the ``steps`` measured after ``warmup`` steps.
    Sub-threshold: ``x = amplitude * cos(w t)`` through ``neurons.membrane`` with the neuron's
    ``tau`` (LIF with input decay, or IF). Rate: ``x = bias + amplitude * cos(w t) + noise * N(0, 1)``
    through the neuron's own forward, spikes averaged over ``trials`` independent noise draws, then
    the tone's amplitude in that rate. A neuron without ``tau`` (``ReLUNeuron``) gets NaN theory
    and membrane.
    """
    if steps < 2 * n_freqs:
        raise ValueError(f"steps={steps} cannot hold {n_freqs} distinct frequencies; use steps >= {2 * n_freqs}")
    dynamics = neuron.dynamics if isinstance(neuron, LIF) else None
    tau = dynamics.tau if dynamics else None
    if dynamics and dynamics.decay_input == math.isinf(tau):
        raise ValueError(f"neurons.membrane models LIF with input decay or IF; {neuron} is neither")
    k = torch.linspace(1, steps // 2, n_freqs, dtype=torch.float64).round().unique()
    omega = 2 * math.pi * k / steps                                      # [F]
    t = torch.arange(warmup + steps, dtype=torch.float64).unsqueeze(1)  # [L, 1]
    tone = amplitude * torch.cos(t * omega)                             # [L, F]
    gen = torch.Generator().manual_seed(seed)
    drive = bias + tone.float().unsqueeze(1) + noise * torch.randn(
        warmup + steps, trials, len(omega), generator=gen)               # [L, trials, F]
    rate = neuron(drive).mean(1)                                         # [L, F]
    measured = lambda s: tone_amplitude(s[warmup:], omega) / amplitude  # noqa: E731
    if tau is None:
        nan = torch.full_like(omega, math.nan)
        return TemporalResponse(omega, nan, nan, measured(rate))
    return TemporalResponse(omega, lif_transfer(omega, tau), measured(membrane(tone, tau)), measured(rate))


# ---------------------------------------------------------------------------------------------
# Spatial: spectra of feature maps
# ---------------------------------------------------------------------------------------------

def as_maps(x: torch.Tensor) -> torch.Tensor | None:
    """View a layer output as a stack of 2-D maps ``[M, H, W]``, or ``None`` if it has no spatial grid.

    A tensor of rank 4 or more whose last two sizes are equal is ``[..., H, W]`` (``[T, B, C, H, W]``
    or ``[T*B, C, H, W]``); otherwise a last size ``N`` that is a square number is a token axis
    ``N = H*W`` of a square grid (``[T, B, C, N]``, a token mask ``[T, B, h, 1, N]``). Rank 3 and
    below has no grid: the head's ``[T, B, C]`` cannot be told from a Conv1d's ``[T*B, C, N]``, so
    probe the neurons around a Conv1d instead. (The models here use square grids; a
    ``[T, B, C, N]`` tensor with ``C == N`` would be misread.)
    """
    if x.dim() < 4:
        return None
    if x.shape[-1] == x.shape[-2] > 1:
        return x.reshape(-1, x.shape[-2], x.shape[-1])
    side = math.isqrt(x.shape[-1])
    if side > 1 and side * side == x.shape[-1]:
        return x.reshape(-1, side, side)
    return None


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
    signal: str                # "spikes" (every value 0 or 1), "membrane", or "silent" (all zero)
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
        spec = torch.fft.fft2(maps.float()).abs()                        # [M, H, W]
        log_amp, power = torch.log1p(spec).double().sum(0), (spec.double() ** 2).sum(0)
        self.log_amp = log_amp if self.log_amp is None else self.log_amp + log_amp
        self.power = power if self.power is None else self.power + power
        self.maps += maps.shape[0]
        self.binary = self.binary and is_binary(maps)


class SpectrumProbe(Hooks):
    """Forward hooks that accumulate the spatial spectra of named modules' outputs.

    Use as a context manager around forward passes; :meth:`results` gives one
    :class:`LayerSpectrum` per module that produced spatial maps, in call order.
    """

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise ValueError(f"no module named {missing} in {type(model).__name__}; "
                           f"see `python spectrum.py layers --model ...` for the names")
        self.modules = {n: modules[n] for n in names}
        self.acc: dict[str, _Accumulator] = {}

    def _hook(self, name: str) -> Callable:
        def hook(module: nn.Module, args, output) -> None:
            if isinstance(output, (tuple, list)):
                output = output[0]
            if name not in self.acc:
                self.acc[name] = _Accumulator(type(module).__name__, len(self.acc))
            self.acc[name].add(output)
        return hook

    def register(self) -> list[RemovableHandle]:
        return [m.register_forward_hook(self._hook(n)) for n, m in self.modules.items()]

    def results(self) -> list[LayerSpectrum]:
        out = []
        for name, a in sorted(self.acc.items(), key=lambda kv: kv[1].order):
            if a.maps == 0:
                continue
            omega, rel = diagonal_profile(a.log_amp / a.maps)
            signal = "silent" if a.power.sum() == 0 else "spikes" if a.binary else "membrane"
            out.append(LayerSpectrum(name, a.kind, signal,
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

def neuron_names(model: nn.Module) -> list[str]:
    """Names of every neuron module (spiking or not) of ``model``."""
    return [n for n, m in model.named_modules() if isinstance(m, Neuron)]


def block_names(model: nn.Module) -> list[str]:
    """Names of the embeddings and blocks of a Max-Former / Max-ResNet in forward order (their outputs
    are membranes): ``model.named_blocks()``; other modules have none."""
    return [n for n, _ in model.named_blocks()] if isinstance(model, maxformer.SpikingNet) else []


def fig6_names(model: nn.Module) -> dict[str, str]:
    """The first module of each kind the paper's Fig. 6 compares: spiking neuron, max-pool, DWC, SSA
    (and avg-pool, for Avg-Pool variants).

    Returns ``{label: module name}`` for the kinds the model has. The DWC is maxformer's ``DWC``
    mixer (LIF, depth-wise conv, BN, plus input); the self-attention is the ``SSA`` module (its
    output includes the residual).
    """
    picks: dict[str, str] = {}
    tests = {
        "spiking neuron": lambda m: isinstance(m, Neuron),
        "max-pool": lambda m: isinstance(m, nn.MaxPool2d),
        "avg-pool": lambda m: isinstance(m, nn.AvgPool2d),
        "DWC": lambda m: isinstance(m, maxformer.DWC),
        "self-attention": lambda m: isinstance(m, maxformer.SSA),
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


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def pyplot() -> ModuleType:
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(fig: Figure, path: Path) -> None:
    """Write a figure as PNG and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    pyplot().close(fig)
    print(f"wrote {path}")


def _freq_axis(ax) -> None:
    ax.set_xlim(0, math.pi)
    ax.set_xticks([0, math.pi / 4, math.pi / 2, 3 * math.pi / 4, math.pi], ["0", "π/4", "π/2", "3π/4", "π"])
    ax.set_xlabel("normalised frequency")


def plot_profiles(ax: Axes, layers: Sequence[LayerSpectrum], labels: Sequence[str], style: str = "-") -> None:
    """Relative log amplitude against frequency, one line per layer (the paper's Fig. 6 style)."""
    for layer, label in zip(layers, labels):
        ax.plot(layer.omega.numpy(), layer.rel_log_amp.numpy(), style, marker=".",
                label=f"{label} ({layer.signal}, {layer.shape[0]}x{layer.shape[1]})")
    _freq_axis(ax)
    ax.set_ylabel("Δ log amplitude (vs DC)")
    ax.legend(fontsize=7)


def plot_hf_share(ax: Axes, layers: Sequence[LayerSpectrum], label: str = "", marker: str = "o") -> None:
    """High-frequency share per layer in call order; spikes and membranes as separate series."""
    for signal, fill in (("spikes", "full"), ("membrane", "none")):
        idx = [i for i, l in enumerate(layers) if l.signal == signal]
        if idx:
            ax.plot(idx, [layers[i].hf_share for i in idx], marker=marker, fillstyle=fill, linestyle=":",
                    label=f"{label} {signal}".strip())
    ax.set_xticks(range(len(layers)), [l.name for l in layers], rotation=90, fontsize=6)
    ax.set_ylabel("high-frequency share (> π/2, DC excluded)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)


def spectrum_rows(model_name: str, layers: Sequence[LayerSpectrum]) -> tuple[list[dict], list[dict]]:
    """(per-layer summary rows, long-format diagonal profile rows) for CSV output."""
    summary = [dict(model=model_name, order=i, layer=l.name, kind=l.kind, signal=l.signal, height=l.shape[0],
                    width=l.shape[1], maps=l.maps, hf_share=l.hf_share) for i, l in enumerate(layers)]
    profiles = [dict(model=model_name, layer=l.name, signal=l.signal, omega=float(w), rel_log_amp=float(a))
                for l in layers for w, a in zip(l.omega, l.rel_log_amp)]
    return summary, profiles


def cmd_temporal(args: argparse.Namespace) -> None:
    plt = pyplot()
    neurons = {f"LIF (tau={args.tau:g})": LIF(args.tau, args.v_threshold), "IF": IF(args.v_threshold)}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    rows = []
    for ax, (label, neuron) in zip(axes, neurons.items()):
        r = temporal_response(neuron, n_freqs=args.freqs, steps=args.steps, trials=args.trials,
                              bias=args.bias, amplitude=args.amplitude, noise=args.noise, seed=args.seed)
        w = r.omega.numpy()
        ax.semilogy(w, r.theory.numpy(), "k-", label="theory |H(e^jω)| (membrane)")
        ax.semilogy(w, r.subthreshold.numpy(), "o", fillstyle="none", label="measured sub-threshold membrane")
        ax.semilogy(w, r.rate.numpy(), "s-", label=f"measured spike rate ({args.trials} trials)")
        ax.set_title(label)
        _freq_axis(ax)
        ax.set_ylabel("gain")
        ax.legend(fontsize=7)
        rows += [dict(neuron=label, omega=float(a), theory=float(b), subthreshold=float(c), rate=float(d))
                 for a, b, c, d in zip(r.omega, r.theory, r.subthreshold, r.rate)]
    fig.suptitle(f"Neuron frequency response: input {args.bias:g} + {args.amplitude:g} cos(ωt) "
                 f"+ N(0, {args.noise:g}²), threshold {args.v_threshold:g}", fontsize=9)
    out = Path(args.out)
    write_csv(out / "temporal_response.csv", rows)
    save(fig, out / "temporal_response.png")


def cmd_layers(args: argparse.Namespace) -> None:
    model = zoo.create_model(args.model)
    picks = {v: k for k, v in fig6_names(model).items()}
    blocks, neurons = set(block_names(model)), set(neuron_names(model))
    for name, module in model.named_modules():
        if name:
            tags = [t for t, member in (("block", name in blocks), ("neuron", name in neurons)) if member]
            tags += [f"fig6: {picks[name]}"] if name in picks else []
            print(f"{name:50s} {type(module).__name__:20s} {' '.join(tags)}")


def cmd_spatial(args: argparse.Namespace) -> None:
    batches, info, run = prepare(args, args.spec, args.checkpoint)
    picks = fig6_names(run.model)
    names = select_layers(run.model, args.layers)
    layers = spatial_spectra(run.model, batches, list(dict.fromkeys([*picks.values(), *names])), progress=True)
    by_name = {l.name: l for l in layers}
    tag, title, out = run.tag(info.name), run.title(info.name), Path(args.out)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    found = [(label, by_name[n]) for label, n in picks.items() if n in by_name]
    plot_profiles(ax, [l for _, l in found], [f"{label}: {l.name}" for label, l in found])
    ax.set_title(f"{title}:\nFourier spectra of outputs", fontsize=8)
    save(fig, out / f"{tag}_fig6.png")
    curve = [l for l in layers if l.name in set(names)]
    fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(curve)), 4.5))
    plot_hf_share(ax, curve)
    ax.set_title(f"{title}: high-frequency share per layer", fontsize=8)
    save(fig, out / f"{tag}_hf_share.png")
    summary, profiles = spectrum_rows(run.spec or run.name, layers)
    write_csv(out / f"{tag}_spectra.csv", summary)
    write_csv(out / f"{tag}_profiles.csv", profiles)
    for row in summary:
        print(f"{row['layer']:40s} {row['signal']:9s} {row['height']:>3}x{row['width']:<3} hf_share {row['hf_share']:.4f}")


def avg_variant_spec(model: nn.Module) -> str:
    """The Avg-Pool twin of a Max-Former: every ``max`` embedding and mixer becomes ``avg``."""
    if not isinstance(model, maxformer.MaxFormer):
        raise UsageError(f"{type(model).__name__} has no patch embeddings or token mixers to swap for avg-pool; "
                         f"compare Max-Former / MS-QKFormer models, or pass --variant with a spec of your own")
    cfg = model.cfg
    if "max" not in (*cfg.embeds, *cfg.mixers):
        raise UsageError(f"{type(model).__name__} has no max-pool embedding or mixer to swap "
                         f"(embeds={cfg.embeds}, mixers={cfg.mixers}); pass --variant explicitly")
    swap = lambda names: ",".join("avg" if n == "max" else n for n in names)  # noqa: E731
    return f"embed={swap(cfg.embeds)} mixer={swap(cfg.mixers)}"


def cmd_compare(args: argparse.Namespace) -> None:
    """A model beside its variant, both trained (checkpoints given or shipped) or both untrained."""
    batches, info, base = prepare(args, args.spec, args.checkpoint)
    variant_spec = args.variant or avg_variant_spec(base.model)
    variant_ckpt = checkpoint_for(args, variant_spec, args.variant_checkpoint)
    if (base.checkpoint is None) != (variant_ckpt is None):
        trained, fresh = (base.title(info.name), variant_spec) if variant_ckpt is None else (variant_spec, base.title(info.name))
        raise UsageError(f"compare treats both sides alike: {trained} is trained but there is no checkpoint for "
                         f"{fresh}; pass --checkpoint and --variant-checkpoint, or --untrained for both")
    _, _, variant = prepare(args, variant_spec, str(variant_ckpt) if variant_ckpt else None)
    runs = {base.spec or base.name: spatial_spectra(base.model, batches, select_layers(base.model, args.layers),
                                                    progress=True),
            variant_spec: spatial_spectra(variant.model, batches, select_layers(variant.model, args.layers),
                                          progress=True)}
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    rows, profiles = [], []
    for (label, layers), marker, style in zip(runs.items(), ("o", "s"), ("-", "--")):
        plot_hf_share(left, layers, label, marker)
        last = layers[-1]
        plot_profiles(right, [last], [f"{label}: {last.name}"], style)
        summary, prof = spectrum_rows(label, layers)
        rows += summary
        profiles += prof
    left.set_title("high-frequency share per layer", fontsize=9)
    right.set_title("Fourier spectrum of the last probed layer", fontsize=9)
    fig.suptitle(f"{base.title(info.name)} vs {variant.title(info.name)} ({args.samples} samples)", fontsize=9)
    tag, out = base.tag(info.name), Path(args.out)
    save(fig, out / f"{tag}_compare.png")
    write_csv(out / f"{tag}_compare.csv", rows)
    write_csv(out / f"{tag}_compare_profiles.csv", profiles)
    for a, b in zip(*runs.values()):
        print(f"{a.name:30s} {a.hf_share:.4f}  vs  {b.name:30s} {b.hf_share:.4f}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spectrum.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Run `python spectrum.py COMMAND --help` for each command's options.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("temporal", help="frequency response of the LIF and IF neurons: theory, membrane, spike rate")
    p.add_argument("--tau", type=float, default=2.0, help="LIF time constant (default: 2.0, the paper's)")
    p.add_argument("--v-threshold", type=float, default=1.0, help="firing threshold (default: 1.0)")
    p.add_argument("--bias", type=float, default=1.0, help="constant input that sets the operating point (default: 1.0)")
    p.add_argument("--amplitude", type=float, default=0.25, help="amplitude of the input sinusoid (default: 0.25)")
    p.add_argument("--noise", type=float, default=0.5, help="std of the Gaussian input noise (default: 0.5)")
    p.add_argument("--trials", type=int, default=512, help="noise trials averaged into the rate (default: 512)")
    p.add_argument("--steps", type=int, default=256, help="measured time steps per trial (default: 256)")
    p.add_argument("--freqs", type=int, default=32, help="number of test frequencies in (0, π] (default: 32)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")
    p.add_argument("--out", default="runs/analysis", help="output folder (default: runs/analysis)")
    p.set_defaults(run=cmd_temporal)
    p = sub.add_parser("spatial", help="Fig. 6 style spectra of neuron / max-pool / DWC / attention outputs, "
                                       "and the high-frequency share of every layer")
    add_model_args(p)
    p.add_argument("--layers", default="neurons,blocks",
                   help="layers of the per-layer curve: 'neurons', 'blocks', 'fig6' and/or glob patterns of module "
                        "names, comma-separated (default: neurons,blocks); list names with the 'layers' command")
    p.set_defaults(run=cmd_spatial)
    p = sub.add_parser("compare", help="a model beside its Avg-Pool variant (or any --variant spec), same data, "
                                       "both trained or both untrained")
    add_model_args(p)
    p.add_argument("--variant", default=None,
                   help="ablation spec of the variant (default: every 'max' embedding/mixer of the model -> 'avg')")
    p.add_argument("--variant-checkpoint", default=None,
                   help="weights of the variant (default: its shipped checkpoint for --seed, if there is one)")
    p.add_argument("--layers", default="blocks",
                   help="layers to compare, as for 'spatial' (default: blocks, whose names both models share)")
    p.set_defaults(run=cmd_compare)
    p = sub.add_parser("layers", help="list a model's module names, marking blocks, neurons and the Fig. 6 picks")
    p.add_argument("--model", default="max_former_tiny", help="model name (default: max_former_tiny)")
    p.set_defaults(run=cmd_layers)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    run_command(parser, args.run, args)


if __name__ == "__main__":
    main()
