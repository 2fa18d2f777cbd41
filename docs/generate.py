"""Regenerate everything in ``docs/`` that is read off the code or measured by it, so it cannot go stale:

- ``docs/shapes.md``: tensor shapes through every official model and ``max_former_tiny``, from a
  forward pass on PyTorch's ``meta`` device (no memory, no arithmetic) with hooks on
  ``model.named_blocks()``;
- the code map in ``docs/architecture.md`` (between its GENERATED markers): each block of the
  paper's Figure 1 / Table 1, the object that implements it, found by name (no line numbers);
- the mini Table 4's tables in ``docs/argument.md`` (between its GENERATED markers), from the
  ``table4`` section of ``docs/results.json`` (``python docs/generate.py table4`` runs ``table4.py``);
- every measured number in README.md and docs/*.md, written as ``<!-- r:KEY:FORMAT -->VALUE<!-- /r -->``
  where KEY is a ``/``-separated path into ``docs/results.json``, the record the commands below
  write; ``--check`` fails when prose and record disagree;
- ``docs/tutorial.ipynb``, the notebook made from ``docs/tutorial.md`` (prose and ```bash blocks
  become Markdown cells, ```python blocks code cells).

    python docs/generate.py                 # rewrite all of the above from the code and docs/results.json
    python docs/generate.py --check         # exit 1 if any is stale (the test suite runs this)
    python docs/generate.py results         # run the analysis commands on the shipped checkpoints:
                                            #   docs/figures/*, docs/results.json; then the above
    python docs/generate.py checkpoints     # train docs/checkpoints/*.pth with train.py (analysis_cli.SHIPPED)
    python docs/generate.py table4          # the mini Table 4 (table4.py): docs/figures/table4.png,
                                            #   the table4 section of docs/results.json; then the above
"""
from __future__ import annotations

import argparse
import csv
import importlib
import inspect
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import zoo  # noqa: E402  (the repository root, for `python docs/generate.py`)
from analysis_cli import AVG_TINY, SHIPPED  # noqa: E402

DOCS = ROOT / "docs"
FIGURES = DOCS / "figures"
SHAPES, ARCHITECTURE, TUTORIAL, NOTEBOOK, ARGUMENT = (DOCS / n for n in ("shapes.md", "architecture.md", "tutorial.md",
                                                                          "tutorial.ipynb", "argument.md"))
RESULTS = DOCS / "results.json"
MODELS = sorted(p.stem for p in (ROOT / "tests" / "reference").glob("*.json")) + ["max_former_tiny"]
BEGIN, END = "<!-- BEGIN GENERATED code map -->", "<!-- END GENERATED code map -->"
T4_BEGIN, T4_END = "<!-- BEGIN GENERATED table4 -->", "<!-- END GENERATED table4 -->"
MARK = re.compile(r"<!-- r:(?P<key>[^: ]+):(?P<fmt>[^ ]*) -->(?P<value>.*?)<!-- /r -->")

# (paper, our object, the authors' class name where docs/reference/models.md or their code gives it)
CODE_MAP = [
    ("LIF neuron, eqs. 1-3 (section 3.1)", "neurons.LIF", "MultiStepLIFNode (spikingjelly)"),
    ("IF neuron (the b -> 1 limit)", "neurons.IF", "MultiStepIFNode (spikingjelly)"),
    ("non-spiking twin, Table 2 \"Max-Former (ANN)\"", "neurons.ReLUNeuron", ""),
    ("`[LIF] -> Conv -> BN -> [pool]` unit", "maxformer.Unit", "(inline in each embedding)"),
    ("Embed-Orig, stage 1 (Table 4)", "maxformer.EmbedOrig", "Embed_Orig"),
    ("Embed-Orig, stages 2-3 (Table 4)", "maxformer.EmbedOrigLater", "Embed_Orig_later"),
    ("Embed-Max, stages 2-3 (section 3.2, Table 4)", "maxformer.EmbedMax", "Embed_Max"),
    ("Embed-Avg, the Avg-Pool ablation (Table 4)", "maxformer.EmbedAvg", "Embed_Avg"),
    ("Embed-1Max, MS-QKFormer's embedding", "maxformer.Embed1Max", "Embed_1Max"),
    ("embedding names for spec strings", "maxformer.make_embedding", ""),
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
    ("spec strings for ablations (Tables 4, 7)", "zoo.parse_spec", ""),
    ("model zoo by name", "zoo.create_model", ""),
    ("the authors' checkpoints", "checkpoints.load_official", ""),
    ("a checkpoint's model, built from its recorded config", "checkpoints.load_model", ""),
    ("the memory plan, one switch per model (memory)", "memory.install", ""),
    ("spikes saved as bytes for the backward (memory)", "kernels.saved_as_bytes", ""),
    ("a convolution of spikes through it", "kernels.spike_conv", ""),
    ("a membrane rebuilt after BN instead of kept (memory)", "memory.rebuild_after_norm", ""),
    ("max-pool that keeps two bytes per output (memory)", "kernels.MaxPool", ""),
    ("what a training forward leaves in memory", "kernels.saved_bytes", ""),
    ("the fused LIF/IF algorithm: all T steps in one autograd node (speed)", "kernels.FusedSequence", ""),
    ("Triton LIF kernels (CUDA)", "kernels.triton_kernels", "MultiStepLIFNode(backend='cupy')"),
]



def shape_rows(name: str) -> tuple[list[tuple[str, str, str, int]], int]:
    """(module, class, output shape, parameters) for the input, each embedding/block and the logits;
    and the model's parameter count."""
    with torch.device("meta"):
        model = zoo.create_model(name).eval()
    cfg = model.cfg
    size = cfg.img_size
    x = torch.empty(1, cfg.T, cfg.in_channels, size, size, device="meta") if model.is_event \
        else torch.empty(1, cfg.in_channels, size, size, device="meta")
    rows = [("input", "", str(list(x.shape)), 0)]
    for n, m in model.named_blocks():
        m.register_forward_hook(lambda mod, inp, out, n=n: rows.append(
            (n, type(mod).__name__, str(list(out.shape)), sum(p.numel() for p in mod.parameters()))))
    with torch.no_grad():
        logits = model(x)
    head = [m for n, m in model.named_children() if model.stage_of(n) == ("head", "classifier")]
    rows.append(("head", "Linear", str(list(logits.shape)), sum(p.numel() for h in head for p in h.parameters())))
    return rows, sum(p.numel() for p in model.parameters())


def code_map() -> str:
    """The Markdown table of :data:`CODE_MAP`: each object by name, its kind and file (found by import,
    so a renamed object fails the check instead of pointing nowhere)."""
    lines = ["| paper | implemented by | file | authors' code |", "|---|---|---|---|"]
    for paper, dotted, theirs in CODE_MAP:
        module_name, name = dotted.split(".")
        obj = vars(importlib.import_module(module_name))[name]
        kind = "class" if inspect.isclass(obj) else "def"
        file = f"{module_name}.py"
        lines.append(f"| {paper} | `{kind} {name}` | [{file}](../{file}) | {theirs} |")
    return "\n".join(lines)


def between(text: str, begin: str, end: str, body: str) -> str:
    """``text`` with what lies between the markers ``begin`` and ``end`` replaced by ``body``."""
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def render_shapes() -> str:
    lines = ["# Tensor shapes through the official models and max_former_tiny", "",
             "Generated by `python docs/generate.py` from a forward pass on the meta device, for one",
             "sample (B = 1). Activations are `[T, B, C, H, W]`; the input is `[B, C, H, W]` for static",
             "images (repeated T times inside) and `[B, T, C, H, W]` for event frames. Parameters count",
             "each module's own weights (BN included). `max_former_tiny` is the small model of the",
             "offline default (digits-dvs event frames, 2x24x24, T = 4).", ""]
    for name in MODELS:
        rows, total = shape_rows(name)
        lines += [f"## {name}", "", f"{total:,} parameters.", "",
                  "| module | class | output shape | parameters |", "|---|---|---|---:|"]
        lines += [f"| `{n}` | {c} | `{s}` | {p:,} |" for n, c, s, p in rows]
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Measured numbers: docs/results.json and the markers that quote it
# ---------------------------------------------------------------------------------------------

def read_results() -> dict:
    """docs/results.json: every measured number the docs quote, by section."""
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def write_results(section: str, values: dict) -> None:
    """Merge ``values`` into one section of docs/results.json (other keys of the section stay)."""
    record = read_results()
    record[section] = {**record.get(section, {}), **values}
    RESULTS.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"wrote {RESULTS} [{section}]")


def lookup(record: dict, key: str) -> object:
    """The value at ``a/b/c`` in ``record``; a missing key is an error naming it."""
    value = record
    for part in key.split("/"):
        if not isinstance(value, dict) or part not in value:
            raise SystemExit(f"no result {key!r} in {RESULTS}; run python docs/generate.py results")
        value = value[part]
    return value


def with_results(text: str, record: dict) -> str:
    """``text`` with every ``<!-- r:KEY:FORMAT -->VALUE<!-- /r -->`` VALUE rewritten from ``record``."""
    def value(m: re.Match) -> str:
        return f"<!-- r:{m['key']}:{m['fmt']} -->{format(lookup(record, m['key']), m['fmt'])}<!-- /r -->"
    return MARK.sub(value, text)


def rows_of(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def measure() -> None:
    """Run the analysis commands as the docs show them, on the shipped checkpoints (and untrained),
    writing docs/figures/; record the numbers the docs quote in docs/results.json."""
    import energy
    import spectrum
    out = ["--out", str(FIGURES)]
    spectrum.main(["temporal", *out])
    temporal = {}
    for row in rows_of(FIGURES / "temporal_response.csv"):
        kind = "lif" if row["neuron"].startswith("LIF") else "if"
        temporal.setdefault(kind, []).append(row)
    write_results("temporal", {kind: {"rate_low": float(rows[0]["rate"]), "rate_pi": float(rows[-1]["rate"]),
                                      "membrane_pi": float(rows[-1]["subthreshold"])}
                               for kind, rows in temporal.items()})
    spatial = {}
    for weights, flags in (("seed0", []), ("untrained", ["--untrained"])):
        spectrum.main(["spatial", *flags, *out])
        stem = "max_former_tiny_seed0" if weights == "seed0" else "untrained"
        rows = rows_of(FIGURES / f"max_former_tiny_digits-dvs_{stem}_spectra.csv")
        spatial[weights] = {r["layer"]: float(r["hf_share"]) for r in rows}
    write_results("spatial", spatial)
    compare = {}
    for weights, flags in (("seed0", ["--seed", "0"]), ("seed1", ["--seed", "1"]), ("untrained", ["--untrained"])):
        spectrum.main(["compare", *flags, *out])
        stem = f"max_former_tiny_{weights}" if weights != "untrained" else "untrained"
        rows = rows_of(FIGURES / f"max_former_tiny_digits-dvs_{stem}_compare.csv")
        compare[weights] = {r["layer"]: {} for r in rows}
        for r in rows:
            compare[weights][r["layer"]]["avg" if r["model"] == AVG_TINY else "max"] = float(r["hf_share"])
    write_results("compare", compare)
    results = {}
    for key, flags in (("max_former_tiny_seed0", []), ("max_former_tiny_avg_seed0", ["--spec", AVG_TINY]),
                       ("max_former_tiny_if_seed0", ["--neuron", "if"]), ("untrained", ["--untrained"])):
        energy.main([*flags, *out])
        (layers_csv,) = FIGURES.glob(f"max_former_tiny*_digits-dvs_{key}_energy_layers.csv")
        layers = rows_of(layers_csv)
        rates = [float(r["rate"]) for r in rows_of(Path(str(layers_csv).replace("_energy_layers", "_firing_rates")))]
        total = sum(float(r["energy_mj"]) for r in layers)
        embedding = sum(float(r["energy_mj"]) for r in layers if r["component"] == "embedding")
        results[key] = dict(snn_mj=total, ann_mj=energy.E_MAC_PJ * sum(float(r["flops"]) for r in layers) * 1e-9,
                            msops=sum(float(r["sops"]) for r in layers) / 1e6,
                            mmacs=sum(float(r["macs"]) for r in layers) / 1e6,
                            mean_rate=sum(rates) / len(rates), embedding_share=embedding / total,
                            stem_share=float(layers[0]["energy_mj"]) / total)
    write_results("energy", results)
    write_results("theory", theory_numbers())


def theory_numbers() -> dict:
    """Run docs/theory.md's python blocks (in docs/, as the page says; they redraw its figures) and
    return the numbers its tables quote, from the variables the blocks leave."""
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "theory.md").read_text(), flags=re.S)
    page: dict = {}
    here = Path.cwd()
    try:
        os.chdir(DOCS)
        exec(compile("\n".join(blocks), str(DOCS / "theory.md"), "exec"), page)  # noqa: S102 (our own page)
    finally:
        os.chdir(here)
    neurons = {"LIF tau=2 (paper)": "lif2", "LIF tau=4": "lif4", "IF": "if"}
    ratios: dict = {}
    for (label, bias), ratio in page["rate_ratio"].items():
        ratios.setdefault(neurons[label], {})[f"{bias:g}"] = ratio
    columns = {"input": "input", "max, stride 1": "max1", "avg, stride 1": "avg1", "max, stride 2": "max2",
               "avg, stride 2": "avg2"}
    pooling = {f"{rate:g}": {columns[k]: v for k, v in row.items()} for rate, row in zip(page["rates"], page["rows"])}
    return {"rate_ratio": ratios, "pooling": pooling, "static": page["static"]}


def table4_tables(record: dict) -> str:
    """docs/argument.md's tables from ``results.json["table4"]`` (what ``python table4.py`` records):
    the probe, accuracy with intervals, the verdicts, and the high-frequency shares."""
    import table4
    datasets, probe, table = record["grid"]["datasets"], record["probe"], record["table"]
    bands = ["dc", *table4.BANDS, "corner"]  # results.json sorts its keys: put them back in frequency order
    variants = [v for v in table4.VARIANTS if v in record["grid"]["variants"]]
    lines = ["Linear probe: test top-1 (chance 0.25) from the event frames' power per orientation in one band only.", "",
             f"| dataset | {' | '.join(bands)} |", "|---|" + "---:|" * len(bands)]
    lines += [f"| `{d}` | {' | '.join(f'{probe[d][b]:.2f}' for b in bands)} |" for d in datasets]
    lines += ["", f"Final test top-1 (%) over seeds {', '.join(map(str, record['grid']['seeds']))}: mean [95 % interval].", "",
              f"| variant | {' | '.join(f'`{d}`' for d in datasets)} |", "|---|" + "---:|" * len(datasets)]
    for variant in variants:
        cells = [table[d][variant] for d in datasets]
        lines.append(f"| `{variant}`: {table4.VARIANTS[variant][1]} | "
                     + " | ".join(f"{c['mean']:.1f} [{c['low']:.1f}, {c['high']:.1f}]" for c in cells) + " |")
    lines += ["", "Is `max` better than the other variant? (\"not resolved\": the two intervals overlap)", "",
              f"| `max` against | {' | '.join(f'`{d}`' for d in datasets)} |", "|---|" + "---|" * len(datasets)]
    for variant in [v for v in variants if v in record["verdicts"][datasets[0]]]:
        lines.append(f"| `{variant}` | " + " | ".join(record["verdicts"][d][variant] for d in datasets) + " |")
    lines += ["", "High-frequency share (above half Nyquist) of the stage-2 embedding's output / the last block's "
              "output, on the test set, mean over seeds.", "",
              f"| variant | {' | '.join(f'`{d}`' for d in datasets)} |", "|---|" + "---:|" * len(datasets)]
    for variant in variants:
        shares = [table[d][variant]["hf_share"] for d in datasets]
        lines.append(f"| `{variant}` | " + " | ".join(f"{h['patch_embed2']:.3f} / {h['stage3.0']:.3f}" for h in shares) + " |")
    return "\n".join(lines)


def measure_table4() -> None:
    """The full mini Table 4 (``table4.FULL``, runs in the ignored runs/table4/, resumable) into
    docs/figures/table4.png and the ``table4`` section of docs/results.json."""
    import table4
    record = table4.run(table4.FULL, None, ROOT / "runs" / "table4", jobs=2, figure=FIGURES / "table4.png")
    RESULTS.write_text(json.dumps({**read_results(), "table4": record}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {RESULTS} [table4]")


# ---------------------------------------------------------------------------------------------
# The tutorial as a notebook
# ---------------------------------------------------------------------------------------------

def notebook(markdown: str) -> str:
    """``docs/tutorial.ipynb`` (nbformat 4 JSON) from the tutorial's Markdown: one code cell per
    ```python block, Markdown cells for everything between them. Cell ids are numbered, so the
    notebook is the same every time it is made."""
    import nbformat
    cells = []
    for i, part in enumerate(re.split(r"```python\n(.*?)```\n?", markdown, flags=re.S)):
        text = part.strip("\n")
        if text:
            cell = nbformat.v4.new_code_cell(text) if i % 2 else nbformat.v4.new_markdown_cell(text)
            cell["id"] = f"cell-{len(cells)}"
            cells.append(cell)
    nb = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    return nbformat.writes(nb) + "\n"


def wanted_pages() -> dict[Path, str]:
    """Every generated file and what it should hold now."""
    record = read_results()
    pages = {p: p.read_text() for p in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]}
    wanted = {p: with_results(text, record) for p, text in pages.items()}
    wanted[SHAPES] = render_shapes()
    wanted[ARCHITECTURE] = between(wanted[ARCHITECTURE], BEGIN, END, code_map())
    wanted[ARGUMENT] = between(wanted[ARGUMENT], T4_BEGIN, T4_END, table4_tables(record["table4"]))
    wanted[NOTEBOOK] = notebook(wanted[TUTORIAL])
    return wanted


def train_checkpoints(epochs: int | None, seeds: Sequence[int] | None) -> None:
    """Train every run of ``analysis_cli.SHIPPED`` with the project's own ``train.py`` (offline
    default, its default flags) and keep each final model as ``docs/checkpoints/<run>_seed<s>.pth``:
    the weights and the config, without optimiser state (well under 1 MB)."""
    import train
    runs = {}
    todo = [(seed, run) for run in SHIPPED for seed in run.seeds if seeds is None or seed in seeds]
    for seed, run in sorted(todo, key=lambda item: item[0]):  # every seed-0 run first
        with tempfile.TemporaryDirectory() as tmp:
            flags = run.train_flags(seed) + (["--epochs", str(epochs)] if epochs else [])
            started = time.perf_counter()
            summary = train.main(flags + ["--output", tmp])
            wall = time.perf_counter() - started
            ckpt = torch.load(Path(tmp) / "last.pth", map_location="cpu", weights_only=True)
            with open(Path(tmp) / "log.csv") as f:
                log = list(csv.DictReader(f))
        kept = {k: ckpt[k] for k in ("format", "model", "model_config", "world", "epoch", "step", "best_acc1",
                                     "best_epoch", "history")}
        kept["config"] = {k: v for k, v in ckpt["config"].items() if k not in ("output", "resume")}
        run.path(seed).parent.mkdir(parents=True, exist_ok=True)
        torch.save(kept, run.path(seed))
        runs[run.path(seed).stem] = dict(
            flags=" ".join(flags), epochs=len(log), best_acc1=summary["best_acc1"],
            best_epoch=summary["best_epoch"], final_acc1=summary["final_acc1"],
            train_seconds=sum(float(r["seconds"]) for r in log), wall_seconds=wall,
            kilobytes=run.path(seed).stat().st_size / 1024)
        print(f"wrote {run.path(seed)}: {runs[run.path(seed).stem]}", flush=True)
        write_results("training", runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", default="docs", choices=("docs", "results", "checkpoints", "table4"),
                        help="docs (default): the generated pages; results: measure, then the pages; "
                             "checkpoints: train docs/checkpoints/*.pth; table4: the mini Table 4 grid "
                             "(python table4.py, about 25 min on 2 cores), then the pages")
    parser.add_argument("--check", action="store_true", help="only compare with the files in docs/; exit 1 if stale")
    parser.add_argument("--epochs", type=int, default=None, help="checkpoints: epochs per run (default: train.py's)")
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=None,
                        help="checkpoints: train only the runs of these seeds, e.g. 1 (default: all)")
    args = parser.parse_args()
    if args.what == "checkpoints":
        train_checkpoints(args.epochs, args.seeds)
        return
    if args.what == "results":
        measure()
    if args.what == "table4":
        measure_table4()
    wanted = wanted_pages()
    stale = [path for path, text in wanted.items() if not path.exists() or path.read_text() != text]
    if args.check:
        if stale:
            sys.exit(f"stale: {', '.join(map(str, stale))}; run python docs/generate.py")
        return
    for path in stale:
        path.write_text(wanted[path])
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
