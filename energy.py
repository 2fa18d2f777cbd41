"""Theoretical energy of a spiking network, as in the paper's Appendix B (eq. 22-23) and Table 9.

Conventions (the spiking-transformer literature's, made explicit):

- **FLOPs** of a layer are its multiply-accumulates (MACs) for *one sample at one time step*;
  one MAC counts as one "FLOP". Conv: ``H_out * W_out * C_out * (C_in / groups) * k_h * k_w``;
  Linear: ``out_features * in_features`` per token. Bias, BN (folded into the conv), pooling,
  neurons and residual additions are not counted.
- A layer whose input is **binary spikes** (every value seen over the dataset is 0 or 1) does
  accumulates only, gated by its input spikes: ``SOPs = rate * T * FLOPs`` with ``rate`` the
  input firing rate (eq. 23).
- A layer whose input is **not binary** multiplies: the stem conv on a static image, a conv fed a
  membrane potential (Max-ResNet's downsampling shortcut), and the stem conv on **event frames**,
  whose values are event counts per pixel (0, 1, 2, ...). It costs ``T * FLOPs`` MACs, or
  ``FLOPs`` when its input is identical at every time step (a static image repeated T times: the
  result is computed once and reused). A layer that saw any non-binary input counts as MAC for
  all of it.
- **Self-attention** (Spikformer SSA, per head ``q @ (k^T @ v)``, q, k, v ``[N, d]`` spikes): each
  product is ``N * d * d`` MACs per head, ``N * d * D`` over the ``D / d`` heads. The left operand
  gates the accumulates: ``k^T @ v`` adds up rows of ``v`` where ``k`` fired (rate of k), and
  ``q @ (k^T v)`` adds up rows of the integer matrix ``k^T v`` where ``q`` fired (rate of q). The
  0.125 scale folds into the next layer. **Token attention** (QKFormer): summing ``q`` over the
  head's channels is ``N * D`` accumulates gated by q; ``mask * k`` is ``N * D`` element-wise
  products gated by the token mask.
- Energy per inference ``E = E_MAC * MACs + E_AC * SOPs`` (eq. 22) with ``E_MAC = 4.6 pJ``,
  ``E_AC = 0.9 pJ`` (45 nm CMOS). The ANN of the same architecture does every operation of one
  time step as a MAC: ``E_ANN = E_MAC * sum(FLOPs)``.

Command line: ``python energy.py --help``; writes a per-layer CSV, a per-stage CSV in the layout of
Table 9 (embedding / mixer / MLP per stage, classifier, total), neuron firing rates, and a
Markdown summary.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle
from tqdm import tqdm

import maxformer
from analysis_cli import Hooks, add_model_args, is_binary, prepare, run_command, write_csv
from neurons import Neuron

E_MAC_PJ = 4.6
E_AC_PJ = 0.9


@dataclass
class _Site:
    """Running totals of one counted operation over a dataset."""
    kind: str
    order: int
    macs: float = 0.0        # MACs over all calls: every sample, every time step
    reused_macs: float = 0.0  # MACs if a time-repeated input is computed once
    ones: float = 0.0        # sum of the gating input
    numel: float = 0.0       # size of the gating input
    binary: bool = True

    def add(self, macs: float, gate: torch.Tensor, T: int) -> None:
        gate = gate.detach()
        self.macs += macs
        self.ones += float(gate.sum())
        self.numel += gate.numel()
        self.binary = self.binary and is_binary(gate)
        same = gate.shape[0] % T == 0 and bool((gate.reshape(T, -1) == gate.reshape(T, -1)[:1]).all())
        self.reused_macs += macs / T if same else macs


def conv_macs(conv: nn.modules.conv._ConvNd, out: torch.Tensor) -> int:
    """MACs of one call of a Conv1d/2d: every output element times ``C_in / groups * prod(kernel)``."""
    k = 1
    for s in conv.kernel_size:
        k *= s
    return out.numel() * conv.in_channels // conv.groups * k


def linear_macs(linear: nn.Linear, out: torch.Tensor) -> int:
    """MACs of one call of a Linear: every output element times ``in_features``."""
    return out.numel() * linear.in_features


@dataclass
class LayerEnergy:
    """Per-inference cost of one counted operation."""
    name: str
    kind: str
    stage: str        # "1", "2", ... or "stem" / "head" / "-"
    component: str    # embedding / mixer / mlp / block / classifier / other
    flops: float      # MACs per sample per time step
    rate: float       # input firing rate (NaN when the input is not binary)
    mode: str         # "AC" (spike-driven) or "MAC"
    sops: float       # accumulates per inference
    macs: float       # multiply-accumulates per inference
    energy_mj: float  # E_MAC * macs + E_AC * sops, in mJ


@dataclass
class EnergyReport:
    """Everything :func:`estimate_energy` measured, per inference (one sample, all T steps)."""
    T: int
    samples: int
    e_mac_pj: float
    e_ac_pj: float
    layers: list[LayerEnergy]
    neuron_rates: dict[str, float]  # name -> output firing rate (mean output for non-spiking neurons)

    @property
    def energy_mj(self) -> float:
        return sum(l.energy_mj for l in self.layers)

    @property
    def ann_energy_mj(self) -> float:
        """All operations of one time step as MACs: the ANN of the same architecture."""
        return self.e_mac_pj * sum(l.flops for l in self.layers) * 1e-9

    def stage_table(self) -> list[dict]:
        """Rows in the layout of Table 9: (stage, component) with FLOPs, SOPs, MACs and energy, then total."""
        rows: dict[tuple[str, str], dict] = {}
        for l in self.layers:
            row = rows.setdefault((l.stage, l.component), dict(stage=l.stage, component=l.component,
                                                               flops=0.0, sops=0.0, macs=0.0, energy_mj=0.0))
            for key, value in (("flops", l.flops), ("sops", l.sops), ("macs", l.macs), ("energy_mj", l.energy_mj)):
                row[key] += value
        out = list(rows.values())
        out.append(dict(stage="total", component="", flops=sum(r["flops"] for r in out),
                        sops=sum(r["sops"] for r in out), macs=sum(r["macs"] for r in out),
                        energy_mj=self.energy_mj))
        return out


def stage_of(model: nn.Module, name: str) -> tuple[str, str]:
    """``(stage, component)`` of the layer ``name``: ``model.stage_of`` for the project's models,
    ``("-", "other")`` for any other module."""
    return model.stage_of(name) if isinstance(model, maxformer.SpikingNet) else ("-", "other")


class OpCounter(Hooks):
    """Forward hooks that count MACs, input firing rates and neuron firing rates.

    Hooks every Conv1d/Conv2d/Linear, every neuron module, and every ``maxformer.SpikeProduct``
    (the spike products of SSA and token attention): a product's first operand is its gating spike
    tensor, and it costs ``macs_per_element`` MACs per element of that operand (see the module
    docstring for the convention). ``T`` is the number of time steps the model runs; convolutions
    see ``[T*B, ...]`` inputs with time folded into batch.
    """

    def __init__(self, model: nn.Module, T: int) -> None:
        self.model, self.T = model, T
        self.sites: dict[str, _Site] = {}
        self.rates: dict[str, list[float]] = {}
        self.samples = 0

    def site(self, name: str, kind: str) -> _Site:
        if name not in self.sites:
            self.sites[name] = _Site(kind, len(self.sites))
        return self.sites[name]

    def _layer_hook(self, name: str) -> Callable:
        def hook(module: nn.Module, args, out: torch.Tensor) -> None:
            macs = linear_macs(module, out) if isinstance(module, nn.Linear) else conv_macs(module, out)
            self.site(name, type(module).__name__).add(macs, args[0], self.T)
        return hook

    def _product_hook(self, name: str) -> Callable:
        """Count a spike product: ``macs_per_element`` MACs per element of its gating first operand."""
        def hook(module: maxformer.SpikeProduct, args, out: torch.Tensor) -> None:
            self.site(name, "SpikeProduct").add(args[0].numel() * module.macs_per_element, args[0], self.T)
        return hook

    def _neuron_hook(self, name: str) -> Callable:
        def hook(module: nn.Module, args, out: torch.Tensor) -> None:
            total = self.rates.setdefault(name, [0.0, 0.0])
            total[0] += float(out.detach().sum())
            total[1] += out.numel()
        return hook

    def _count_samples(self, module: nn.Module, args) -> None:
        self.samples += args[0].shape[0]

    def register(self) -> list[RemovableHandle]:
        handles = [self.model.register_forward_pre_hook(self._count_samples)]
        for name, m in self.model.named_modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                handles.append(m.register_forward_hook(self._layer_hook(name)))
            elif isinstance(m, Neuron):
                handles.append(m.register_forward_hook(self._neuron_hook(name)))
            elif isinstance(m, maxformer.SpikeProduct):
                handles.append(m.register_forward_hook(self._product_hook(name)))
        return handles

    def report(self, e_mac_pj: float = E_MAC_PJ, e_ac_pj: float = E_AC_PJ) -> EnergyReport:
        if self.samples == 0:
            raise RuntimeError("no forward pass was counted; run the model inside the OpCounter context")
        layers = []
        for name, s in sorted(self.sites.items(), key=lambda kv: kv[1].order):
            per_sample = s.macs / self.samples
            flops = per_sample / self.T
            if s.binary:
                rate = s.ones / s.numel
                sops, macs = rate * per_sample, 0.0
            else:
                rate, sops, macs = float("nan"), 0.0, s.reused_macs / self.samples
            stage, component = stage_of(self.model, name)
            layers.append(LayerEnergy(name, s.kind, stage, component, flops, rate,
                                      "AC" if s.binary else "MAC", sops, macs,
                                      (e_mac_pj * macs + e_ac_pj * sops) * 1e-9))
        rates = {n: ones / numel for n, (ones, numel) in self.rates.items()}
        return EnergyReport(self.T, self.samples, e_mac_pj, e_ac_pj, layers, rates)


@torch.no_grad()
def estimate_energy(model: nn.Module, batches: Iterable[torch.Tensor], T: int,
                    e_mac_pj: float = E_MAC_PJ, e_ac_pj: float = E_AC_PJ,
                    progress: bool = False) -> EnergyReport:
    """Run ``model`` (eval mode) over ``batches`` and return its per-inference energy (eq. 22-23)."""
    model.eval()
    with OpCounter(model, T) as counter:
        for x in tqdm(batches, desc="energy", disable=not progress):
            model(x)
    return counter.report(e_mac_pj, e_ac_pj)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

COMPONENTS = ("embedding", "mixer", "mlp", "block", "classifier", "other")


def table9(report: EnergyReport) -> list[dict]:
    """Energy in mJ per stage (rows) and component (columns), the layout of the paper's Table 9."""
    rows = [r for r in report.stage_table() if r["stage"] != "total"]
    present = [c for c in COMPONENTS if any(r["component"] == c for r in rows)]
    out = []
    for stage in dict.fromkeys(r["stage"] for r in rows):
        cells = {c: sum((r["energy_mj"] for r in rows if r["stage"] == stage and r["component"] == c), 0.0)
                 for c in present}
        out.append(dict(stage=stage, **cells, total=sum(cells.values())))
    out.append(dict(stage="total", **{c: sum(r[c] for r in out) for c in present}, total=report.energy_mj))
    return out


def markdown(report: EnergyReport, title: str) -> str:
    """A Markdown summary: Table 9 layout, totals, and the per-layer table."""
    def cell(value, fmt: str) -> str:
        if not isinstance(value, float):
            return str(value)
        return "-" if math.isnan(value) else "0" if value == 0 else format(value, fmt)

    def table(rows: list[dict], fmt: dict[str, str]) -> list[str]:
        head = list(rows[0])
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(cell(r[k], fmt.get(k, ".4g")) for k in head) + " |" for r in rows]
        return lines
    t9 = [{("stage" if k == "stage" else f"{k} (mJ)"): v for k, v in r.items()} for r in table9(report)]
    layers = [dict(layer=l.name, kind=l.kind, mode=l.mode, FLOPs=l.flops, rate=l.rate, SOPs=l.sops,
                   MACs=l.macs, **{"energy (mJ)": l.energy_mj}) for l in report.layers]
    lines = [f"## {title}", "",
             f"Per inference (one sample, T = {report.T}), averaged over {report.samples} samples; "
             f"E_MAC = {report.e_mac_pj:g} pJ, E_AC = {report.e_ac_pj:g} pJ.", "",
             f"- SNN energy: **{report.energy_mj:.4f} mJ** "
             f"({sum(l.sops for l in report.layers) / 1e6:.2f} M SOPs, {sum(l.macs for l in report.layers) / 1e6:.2f} M MACs)",
             f"- ANN of the same architecture (all {sum(l.flops for l in report.layers) / 1e6:.2f} M FLOPs as MACs, "
             f"one step): **{report.ann_energy_mj:.4f} mJ**",
             f"- mean neuron firing rate: {sum(report.neuron_rates.values()) / max(len(report.neuron_rates), 1):.4f}",
             "", "### Energy per stage and component (mJ, Table 9 layout)", "",
             *table(t9, {k: ".3e" for k in t9[0]}), "", "### Per layer", "", *table(layers, {"FLOPs": ".4g"}), ""]
    return "\n".join(lines)


def cmd_energy(args: argparse.Namespace) -> None:
    batches, info, run = prepare(args, args.spec, args.checkpoint)
    report = estimate_energy(run.model, batches, run.model.T, args.e_mac, args.e_ac, progress=True)
    tag, out = run.tag(info.name), Path(args.out)
    write_csv(out / f"{tag}_energy_layers.csv", [vars(l) for l in report.layers])
    write_csv(out / f"{tag}_energy_stages.csv", report.stage_table())
    write_csv(out / f"{tag}_energy_table9.csv", table9(report))
    write_csv(out / f"{tag}_firing_rates.csv", [dict(neuron=n, rate=r) for n, r in report.neuron_rates.items()])
    text = markdown(report, run.title(info.name))
    (out / f"{tag}_energy.md").write_text(text)
    print(text)
    print(f"wrote {out}/{tag}_energy_*.csv, {tag}_firing_rates.csv and {tag}_energy.md")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="energy.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    parser.add_argument("--e-mac", type=float, default=E_MAC_PJ, help=f"energy of one MAC in pJ (default: {E_MAC_PJ}, 45 nm)")
    parser.add_argument("--e-ac", type=float, default=E_AC_PJ, help=f"energy of one AC in pJ (default: {E_AC_PJ}, 45 nm)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    run_command(parser, cmd_energy, parser.parse_args(argv))


if __name__ == "__main__":
    main()
