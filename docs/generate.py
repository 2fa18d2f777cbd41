"""Regenerate the parts of ``docs/`` that are read off the code, so they cannot go stale:

- ``docs/shapes.md``: tensor shapes through every official model, stage by stage, from a real
  forward pass on PyTorch's ``meta`` device (no memory, no arithmetic) with hooks on every patch
  embedding and block;
- the code map in ``docs/architecture.md`` (between its GENERATED markers): each block of the paper's
  Figure 1 / Table 1 with the class and lines that implement it.

    python docs/generate.py            # rewrite both
    python docs/generate.py --check    # exit 1 if either is stale (the test suite runs this)
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import maxformer  # noqa: E402  (the repository root, for `python docs/generate.py`)

DOCS = Path(__file__).resolve().parent
SHAPES, ARCHITECTURE = DOCS / "shapes.md", DOCS / "architecture.md"
OFFICIAL = sorted(p.stem for p in (DOCS.parent / "tests" / "reference").glob("*.json"))
BEGIN, END = "<!-- BEGIN GENERATED code map -->", "<!-- END GENERATED code map -->"

# (paper, our object, the authors' class name where MODELS.md or their code gives it)
CODE_MAP = [
    ("LIF neuron, eqs. 1-3 (section 3.1)", "neurons.LIF", "MultiStepLIFNode (spikingjelly)"),
    ("IF neuron (the b -> 1 limit)", "neurons.IF", "MultiStepIFNode (spikingjelly)"),
    ("non-spiking twin, Table 2 \"Max-Former (ANN)\"", "neurons.ReLUNeuron", ""),
    ("`[LIF] -> Conv -> BN -> [pool]` unit", "maxformer.Unit", "(inline in each embedding)"),
    ("Embed-Orig, stage 1 (Table 4)", "maxformer.EmbedOrig", "Embed_Orig"),
    ("Embed-Orig stages 2-3, Embed-Max / Embed-Avg (section 3.2, Table 4), MS-QKFormer's embedding",
     "maxformer.TwoStepEmbed", "Embed_Orig_later / Embed_Max / Embed_Avg / Embed_1Max"),
    ("Embed-Max+ (event stage 1)", "maxformer.EmbedMaxPlus", "Embed_Max_plus"),
    ("ImageNet stage-1 embedding (Table 3)", "maxformer.EmbedOrigImageNet", "Embed_Orig_ImageNet"),
    ("MS-QKFormer ImageNet stage 1", "maxformer.QKEmbedInit", "PatchEmbedInit"),
    ("MS-QKFormer ImageNet stages 2-3", "maxformer.QKEmbedStage", "PatchEmbeddingStage"),
    ("Max-Pool / Avg-Pool token mixer (Table 4)", "maxformer.PoolMixer", "Max_Mixer / Avg_Mixer"),
    ("DWC-k token mixer (section 3.3)", "maxformer.DWC", "Mixer_DWC3 / 5 / 7"),
    ("shared q/k/v projections of the attention mixers", "maxformer.SpikeAttention", ""),
    ("SSA and SSA+DWC (Table 7)", "maxformer.SSA", "SSA / SSA_dwc"),
    ("Token QK attention (MS-QKFormer)", "maxformer.TokenQK", ""),
    ("token-mixer names for spec strings", "maxformer.make_mixer", ""),
    ("S-MLP", "maxformer.MLP", "MLP"),
    ("block = token mixer + S-MLP (Figure 1)", "maxformer.Block", "Block_*"),
    ("per-stage spec (Table 1)", "maxformer.MaxFormerConfig", ""),
    ("hierarchical model + head (Figure 1)", "maxformer.MaxFormer", "Max_Former / MS_QKformer"),
    ("stage loop, checkpointing, BN folding", "maxformer.SpikingNet", ""),
    ("Max-ResNet basic block (Table 5)", "maxformer.BasicBlock", "BasicBlock_MS / BasicBlock_MS_max"),
    ("Max-ResNet-18 (Table 5)", "maxformer.MaxResNet", "ResNet"),
    ("spec strings for ablations (Tables 4, 7)", "maxformer.parse_spec", ""),
    ("model zoo by name", "maxformer.create_model", ""),
    ("the authors' checkpoints", "maxformer.load_official", ""),
]


WATCH = re.compile(r"(patch_embed\d+|(stage|layer)\d+\.\d+|bn1)")


def shape_rows(name: str) -> tuple[list[tuple[str, str, str, int]], int]:
    """(module, class, output shape, parameters) for the input, each embedding/block and the logits;
    and the model's parameter count."""
    with torch.device("meta"):
        model = maxformer.create_model(name).eval()
    cfg = model.cfg
    size = cfg.img_size
    x = torch.empty(1, cfg.T, cfg.in_channels, size, size, device="meta") if cfg.in_channels == 2 \
        else torch.empty(1, cfg.in_channels, size, size, device="meta")
    rows = [("input", "", str(list(x.shape)), 0)]
    watched = [(n, m) for n, m in model.named_modules() if WATCH.fullmatch(n)]
    for n, m in watched:
        m.register_forward_hook(lambda mod, inp, out, n=n: rows.append(
            (n, type(mod).__name__, str(list(out.shape)), sum(p.numel() for p in mod.parameters()))))
    with torch.no_grad():
        logits = model(x)
    head = model.head if hasattr(model, "head") else model.fc1
    rows.append(("head", "Linear", str(list(logits.shape)), sum(p.numel() for p in head.parameters())))
    return rows, sum(p.numel() for p in model.parameters())


def code_map() -> str:
    """The Markdown table of :data:`CODE_MAP` with each object's file and line range."""
    lines = ["| paper | implemented by | lines | authors' code |", "|---|---|---|---|"]
    for paper, dotted, theirs in CODE_MAP:
        module_name, name = dotted.split(".")
        source, start = inspect.getsourcelines(getattr(importlib.import_module(module_name), name))
        file = f"{module_name}.py"
        where = f"[{file}#L{start}-L{start + len(source) - 1}](../{file}#L{start}-L{start + len(source) - 1})"
        lines.append(f"| {paper} | `{dotted}` | {where} | {theirs} |")
    return "\n".join(lines)


def with_code_map(text: str) -> str:
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{code_map()}\n{END}{tail}"


def render() -> str:
    lines = ["# Tensor shapes through the official models", "",
             "Generated by `python docs/generate.py` from a forward pass on the meta device, for one",
             "sample (B = 1). Activations are `[T, B, C, H, W]`; the input is `[B, C, H, W]` for static",
             "images (repeated T times inside) and `[B, T, C, H, W]` for event frames. Parameters count",
             "each module's own weights (BN included).", ""]
    for name in OFFICIAL:
        rows, total = shape_rows(name)
        lines += [f"## {name}", "", f"{total:,} parameters.", "",
                  "| module | class | output shape | parameters |", "|---|---|---|---:|"]
        lines += [f"| `{n}` | {c} | `{s}` | {p:,} |" for n, c, s, p in rows]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare with the files in docs/; exit 1 if stale")
    args = parser.parse_args()
    wanted = {SHAPES: render(), ARCHITECTURE: with_code_map(ARCHITECTURE.read_text())}
    stale = [path for path, text in wanted.items() if path.read_text() != text]
    if args.check:
        if stale:
            sys.exit(f"stale: {', '.join(map(str, stale))}; run python docs/generate.py")
        return
    for path in stale:
        path.write_text(wanted[path])
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
