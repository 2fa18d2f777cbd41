"""TEMPORARY, DELETE AT MERGE: the model/data interfaces of PLAN.md that other branches provide.

Each block below installs one interface only where the real one is missing, so this file does
nothing once the model and data branches are merged; then delete it and its one import line in
``analysis_cli.py``. Nothing here is documented or tested for its own sake.
"""
from __future__ import annotations

import re

import torch
from torch import nn

import data
import maxformer

# --- maxformer.SpikingNet.is_event / named_blocks / stage_of -------------------------------------
_BLOCK = re.compile(r"^(patch_embed\d+|stage\d+\.\d+|bn1|layer\d+\.\d+)$")
_STAGES = [(re.compile(r"^patch_embed(\d+)\."), "embedding"), (re.compile(r"^stage(\d+)\.\d+\.(mixer|attn)\."), "mixer"),
           (re.compile(r"^stage(\d+)\.\d+\.mlp\."), "mlp"), (re.compile(r"^layer(\d+)\."), "block")]


def _stage_of(self: nn.Module, name: str) -> tuple[str, str]:
    for pattern, component in _STAGES:
        m = pattern.match(name)
        if m:
            return m.group(1), component
    root = name.split(".")[0]
    if root in ("head", "fc1", "fc"):
        return "head", "classifier"
    return ("stem", "embedding") if root in ("conv1", "stem") else ("-", "other")


if not hasattr(maxformer.SpikingNet, "named_blocks"):
    maxformer.SpikingNet.is_event = property(lambda self: self.cfg.in_channels == 2)
    maxformer.SpikingNet.named_blocks = lambda self: [(n, m) for n, m in self.named_modules() if _BLOCK.match(n)]
    maxformer.SpikingNet.stage_of = _stage_of


# --- maxformer.SpikeProduct: today the products are inline, so stand-ins watch the gating neurons --
if not hasattr(maxformer, "SpikeProduct"):
    class SpikeProduct(nn.Module):
        """Stand-in: called with the gating spikes only, returns them unchanged."""

        def __init__(self, macs_per_element: int) -> None:
            super().__init__()
            self.macs_per_element = macs_per_element

        def forward(self, gate: torch.Tensor) -> torch.Tensor:
            return gate

    def _watch(neuron: nn.Module, product: SpikeProduct) -> None:
        neuron.register_forward_hook(lambda m, args, out: product(out))

    def _with_products(model: nn.Module) -> nn.Module:
        for m in list(model.modules()):
            if isinstance(m, (maxformer.SSA, maxformer.TokenQK)):
                d = m.dim // m.num_heads
                if isinstance(m, maxformer.SSA):
                    m.kv_product, m.qkv_product = SpikeProduct(d), SpikeProduct(d)
                    _watch(m.k_lif, m.kv_product)
                    _watch(m.q_lif, m.qkv_product)
                else:
                    m.q_sum, m.mask_product = SpikeProduct(1), SpikeProduct(d)
                    _watch(m.q_lif, m.q_sum)
                    _watch(m.attn_lif, m.mask_product)
        return model

    def _recorded(name: str, spec: str | None = None, **overrides) -> nn.Module:
        model = _with_products(_create_model(name, spec, **overrides))
        model.config_record = {"name": name, "spec": spec, "overrides": overrides}
        return model

    _create_model = maxformer.create_model
    maxformer.SpikeProduct = SpikeProduct
    maxformer.create_model = _recorded


# --- maxformer.calibrate_batchnorm (moved from spectrum.py, same code) ---------------------------
if not hasattr(maxformer, "calibrate_batchnorm"):
    @torch.no_grad()
    def calibrate_batchnorm(model: nn.Module, batches) -> nn.Module:
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        for x in batches:
            model(x)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        return model.eval()

    maxformer.calibrate_batchnorm = calibrate_batchnorm


# --- maxformer.read_checkpoint / load_model / CheckpointError -------------------------------------
if not hasattr(maxformer, "load_model"):
    class CheckpointError(ValueError):
        """A file that is not a readable checkpoint."""

    def read_checkpoint(path, allow_pickle: bool = False) -> dict:
        try:
            return torch.load(path, map_location="cpu", weights_only=not allow_pickle)
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint {str(path)!r} does not exist") from None
        except Exception:
            raise CheckpointError(f"{path} is corrupt or not a checkpoint, or needs --allow-pickle") from None

    def _config(ckpt) -> dict | None:
        if not (isinstance(ckpt, dict) and str(ckpt.get("format", "")).startswith("maxformer-train/")):
            return None
        if "model_config" in ckpt:
            return ckpt["model_config"]
        args = ckpt["args"]  # format /1 before model_config: what train.py's flags changed
        keys = ("T", "neuron", "neuron_backend")
        return {"name": args["model"], "spec": args.get("spec"),
                "overrides": {k: args[k] for k in keys if args.get(k) is not None}}

    def load_model(checkpoint, name=None, spec=None, allow_pickle=False, **overrides) -> nn.Module:
        ckpt = read_checkpoint(checkpoint, allow_pickle)
        cfg = _config(ckpt)
        if cfg is None:
            if name is None:
                raise CheckpointError(f"{checkpoint} carries no model config: name the model (--model)")
            return maxformer.load_official(maxformer.create_model(name, spec, **overrides), ckpt)
        model = maxformer.create_model(cfg["name"], cfg["spec"], **cfg["overrides"])
        with torch.device("meta"):
            wanted = _create_model(name or cfg["name"], spec or cfg["spec"], **{**cfg["overrides"], **overrides})
        clash = [f"{k}: checkpoint {getattr(model.cfg, k)!r}, given {getattr(wanted.cfg, k)!r}"
                 for k in vars(model.cfg) if getattr(model.cfg, k) != getattr(wanted.cfg, k)]
        if name and name != cfg["name"]:
            clash.insert(0, f"model: checkpoint {cfg['name']!r}, given {name!r}")
        if clash:
            raise maxformer.CheckpointMismatchError(f"{checkpoint} contradicts the options: " + "; ".join(clash))
        model.load_state_dict(ckpt["model"])
        model.config_record = cfg
        return model

    maxformer.CheckpointError, maxformer.read_checkpoint, maxformer.load_model = CheckpointError, read_checkpoint, load_model


# --- data.seeded_subset ------------------------------------------------------------------------
if not hasattr(data, "seeded_subset"):
    data.seeded_subset = lambda dataset, n, seed: torch.utils.data.Subset(
        dataset, torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n].tolist())
