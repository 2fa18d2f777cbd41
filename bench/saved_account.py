"""Where a training forward's memory goes: the bytes kept for the backward, per embedding or block
and per kind of tensor, for our model and for the authors' set-up side by side.

    python bench/saved_account.py                                   # max_former_cifar10dvs, [2, 16, 2, 128, 128]
    python bench/saved_account.py --model max_former_cifar10 --batch-size 16 --top 12

What is counted is what ``kernels.saved_bytes`` counts (each storage once, parameters aside): every
tensor autograd saves, and every tensor the forward made that is still alive when it returns (what a
saved-tensor hook keeps instead, such as our spikes kept as bytes, or state a module keeps, such as the
authors' neurons' membrane sequences). Each is attributed to a *component* (``patch_embed1``,
``stage1.0.mlp``, ``head``, ...: the module running when it was saved, or made if nothing saved it;
``authors.Ref.where`` on the authors' side) and to a *kind*: the operation that made it, whether
autograd saved it or something else kept it, and its dtype. ``KINDS`` names the usual ones in words.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._pytree import tree_flatten

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MIB, Config, Workload, header, table  # noqa: E402  (puts the repository on the path)
from authors import AuthorsNet  # noqa: E402
import kernels  # noqa: E402

# (operation that made it, "saved" by autograd or "kept" otherwise, dtype) -> what it is, in the
# zoo's models. Tensors filled in place are named after the operation that allocated them.
KINDS = {
    ("convolution", "saved", "float32"): "conv output, kept as BN input",
    ("native_batch_norm", "saved", "float32"): "BN output, kept by the next op (pool, neuron, add)",
    ("add", "saved", "float32"): "sum of a shortcut, kept by the next op",
    ("max_pool2d_with_indices", "saved", "int64"): "max-pool indices (int64)",
    ("empty", "saved", "int16"): "max-pool offsets (int16)",
    ("cat", "saved", "float32"): "spikes (float), kept as conv/product input",
    ("sub", "saved", "float32"): "neuron: surrogate input H - threshold, per step",
    ("rsub", "saved", "float32"): "neuron: reset factor 1 - S, per step",
    ("cat", "kept", "float32"): "neuron: membrane sequence v_seq, kept until reset",
    ("add", "kept", "float32"): "neuron: last membrane v, kept until reset",
    ("empty_like", "saved", "float32"): "neuron: membrane H (fused backend) or its float spikes",
    ("_to_copy", "kept", "bool"): "spikes as bytes, kept as conv/product input",
    ("input", "saved", "float32"): "the input batch",
}


def component(name: str) -> str:
    """The embedding or block a module belongs to, from its qualified name: ``patch_embed1``,
    ``stage1.0.mlp``, ``layer2.0`` (Max-ResNet), ``head`` (head neuron and classifier), ``stem``."""
    parts = name.split(".")
    if parts[0].startswith("stage"):
        return ".".join(parts[:3])
    if parts[0].startswith("layer"):
        return ".".join(parts[:2])
    if parts[0] in ("head", "head_lif", "fc1", "spike"):
        return "head"
    if parts[0] in ("conv1", "bn1"):
        return "stem"
    return parts[0]


@contextlib.contextmanager
def module_scope(model: nn.Module) -> Iterator[Callable[[], str]]:
    """Inside, the returned function gives the component (:func:`component`) of the innermost module
    of ``model`` running now, or ``""`` outside every submodule."""
    names = {module: name for name, module in model.named_modules() if name}
    stack: list[str] = []

    def enter(module: nn.Module, args: tuple) -> None:
        stack.append(names[module])

    def leave(module: nn.Module, args: tuple, out: object) -> None:
        stack.pop()

    handles = [h for m in names for h in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))]
    try:
        yield lambda: component(stack[-1]) if stack else ""
    finally:
        for h in handles:
            h.remove()


class Tracer(kernels.NewStorages):
    """``kernels.NewStorages`` that also records, for every storage created, the component running
    (``where()``), the operation that created it and its dtype (in ``about``)."""

    def __init__(self, where: Callable[[], str]) -> None:
        super().__init__()
        self.where = where
        self.about: dict[int, tuple[StorageWeakRef, str, str, str]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = super().__torch_dispatch__(func, types, args, kwargs)
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            key = t.untyped_storage().data_ptr()
            ref = self.created.get(key, (None,))[0]
            if ref is not None and self.about.get(key, (None,))[0] is not ref:  # created by this operation
                self.about[key] = ref, self.where(), func.overloadpacket.__name__, str(t.dtype)[6:]
        return out


def account(work: Workload) -> dict[tuple[str, str], int]:
    """(component, kind) -> bytes that one training forward of ``work`` keeps (see the module docstring);
    kind is ``"made by -> saved by (dtype)"``, or its name in :data:`KINDS`."""
    model = work.model
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, tuple[int, str, str]] = {}
    scope = contextlib.nullcontext(lambda: model.where) if isinstance(model, AuthorsNet) else module_scope(model)
    with scope as where:
        tracer = Tracer(where)

        def pack(t: torch.Tensor) -> torch.Tensor:
            key = t.untyped_storage().data_ptr()
            if key not in params and key not in saved:
                saved[key] = t.untyped_storage().nbytes(), where(), str(t.dtype)[6:]
            return t

        try:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), tracer:
                loss = work.loss()
            alive = tracer.alive()
            alive.pop(loss.untyped_storage().data_ptr(), None)
            out: dict[tuple[str, str], int] = defaultdict(int)
            for key in saved.keys() | alive.keys():
                if key in saved:
                    nbytes, where_kept, dtype = saved[key]
                    maker, how = (tracer.about[key][2] if key in alive else "input"), "saved"
                else:
                    nbytes, (_, where_kept, maker, dtype) = alive[key], tracer.about[key]
                    how = "kept"
                kind = KINDS.get((maker, how, dtype), f"made by {maker}, {how} ({dtype})")
                out[(where_kept or "(model)", kind)] += nbytes
        finally:
            work.reset(model)
    return dict(out)


def by_component(acc: dict[tuple[str, str], int]) -> dict[str, int]:
    """Bytes per component, in order of first appearance."""
    out: dict[str, int] = defaultdict(int)
    for (where, _), n in acc.items():
        out[where] += n
    return dict(out)


def by_kind(acc: dict[tuple[str, str], int]) -> dict[str, int]:
    """Bytes per kind, largest first."""
    out: dict[str, int] = defaultdict(int)
    for (_, kind), n in acc.items():
        out[kind] += n
    return dict(sorted(out.items(), key=lambda item: -item[1]))


def report(accounts: dict[str, dict[tuple[str, str], int]], top: int) -> str:
    """Three tables: MiB per component (a column per variant), MiB per kind, and each variant's
    ``top`` largest (component, kind) entries."""
    names = list(accounts)
    comps = list(dict.fromkeys(c for acc in accounts.values() for c in by_component(acc)))
    per_comp = {v: by_component(acc) for v, acc in accounts.items()}
    rows = [[c, *(per_comp[v].get(c, 0) / MIB for v in names)] for c in comps]
    rows.append(["total", *(sum(acc.values()) / MIB for acc in accounts.values())])
    parts = ["MiB kept per component", table(rows, ["component", *names])]
    per_kind = {v: by_kind(acc) for v, acc in accounts.items()}
    kinds = list(dict.fromkeys(k for v in names for k in per_kind[v]))
    parts += ["", "MiB kept per kind", table([[k, *(per_kind[v].get(k, 0) / MIB for v in names)] for k in kinds],
                                             ["kind", *names])]
    for v, acc in accounts.items():
        largest = sorted(acc.items(), key=lambda item: -item[1])[:top]
        parts += ["", f"{v}: the {top} largest entries",
                  table([[c, k, n / MIB] for (c, k), n in largest], ["component", "kind", "MiB"])]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="max_former_cifar10dvs", help="zoo name (default: max_former_cifar10dvs)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--T", type=int, default=None, help="time steps (default: the model's)")
    parser.add_argument("--top", type=int, default=10, help="largest entries listed per variant")
    args = parser.parse_args(argv)
    print(header(torch.device("cpu")))
    print(f"model {args.model}, batch {args.batch_size}, T {args.T or 'default'}; one training forward, float32\n")
    accounts = {}
    for variant in ("ours", "authors"):
        work = Workload(Config(args.model, args.batch_size, T=args.T, authors=variant == "authors"))
        accounts[variant] = account(work)
        del work
    print(report(accounts, args.top))


if __name__ == "__main__":
    main()
