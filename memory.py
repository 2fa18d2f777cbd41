"""The memory plan of a training forward: less kept for the backward, the same numbers, one switch per model.

A training forward keeps for the backward what each layer saves: a convolution its input, a
fused-backend LIF/IF (``neurons.py``) its charged membrane ``H``. Two facts of the paper's network
let it keep less, bit-identically (bench/README.md measures what they save):

- a spiking neuron's output is exactly 0 or 1, so a convolution reading it keeps it as one byte per
  element instead of four (``kernels.spike_conv``);
- where a LIF reads a batch norm's output, its ``H`` can be rebuilt in the backward from the BN
  input ``c``, which the BN keeps anyway (:func:`rebuild_after_norm`).

:func:`install` hooks both into a model, switched on (``maxformer``'s models do at construction;
:func:`lean`, or ``SpikingNet.set_lean``, switches them), without a word in the models' forwards: a
hook on every neuron remembers its spikes (:func:`is_spikes`, which ``maxformer.frames`` asks before convolving),
and ``maxformer.frames`` tells :func:`remember_norm` which BN output it returned last, so that the
neuron reading it rebuilds its ``H``. Tensors are remembered weakly: nothing here keeps one alive.
"""
from __future__ import annotations

import weakref

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef

from kernels import FUSED_BACKENDS, rebuild_membrane
from neurons import LIF, Neuron, pick_backend

# Storage address -> a weak reference to the storage of a spiking neuron's output (while it lives).
SPIKES: dict[int, StorageWeakRef] = {}
# The BN output maxformer.frames returned last (no pool after the BN): weak references to it, its BN input and the BN.
LAST_NORM: list[tuple[weakref.ref, weakref.ref, weakref.ref]] = []
# Neurons rebuilding their H right now, each with the saved-tensor hooks it entered.
REBUILDING: list[tuple[Neuron, torch.autograd.graph.saved_tensors_hooks]] = []
# Stands in, among autograd's saved tensors, for a neuron's membrane H that the backward recomputes.
RECOMPUTED_MEMBRANE = object()


class SpikeSource:
    """A module other than a neuron whose output is binary when its ``spiking`` is True (the product
    of two spike tensors, say): the memory plan remembers that output as spikes too."""

    spiking: bool = False


def is_spikes(x: torch.Tensor) -> bool:
    """``x`` views the output of a spiking neuron of a lean model, produced with autograd on."""
    ref = SPIKES.get(x.untyped_storage().data_ptr())
    return ref is not None and not ref.expired()


def remember_norm(bn: nn.Module, c: torch.Tensor, y: torch.Tensor) -> None:
    """``y`` is ``bn(c)`` (time unfolded), and nothing but a neuron may read it: a LIF that does rebuilds its ``H``."""
    if isinstance(bn, nn.modules.batchnorm._BatchNorm) and bn.training and y.requires_grad and torch.is_grad_enabled():
        LAST_NORM[:] = [(weakref.ref(y), weakref.ref(c), weakref.ref(bn))]


def rebuild_after_norm(neuron: Neuron, args: tuple[torch.Tensor, ...]) -> None:
    """Forward pre-hook: where ``neuron`` reads the BN output of :func:`remember_norm`, its ``H`` is
    rebuilt in the backward instead of kept.

    The same BN (batch statistics, throwaway running buffers) and the same neuron kernel on the same
    numbers give the same bits, and 4 bytes per element (float32) less are kept. The rebuilt ``H``
    overwrites the recomputed BN output and no spikes are kept (``kernels.rebuild_membrane``), so the
    rebuild makes one new tensor, not three. The BN and the neuron still run as always, so their hooks
    see what they always see. Other cases (no gradient, autocast, the ``torch`` backend, other
    neurons, a pool between the BN and the neuron) run plainly: with a pool the rebuild would cost the
    pool again and, for the moment of the rebuild, the full-resolution BN output (tried in the second
    pass of the memory work: slower, and no lower peak on the event model).
    """
    if not (neuron.lean and LAST_NORM):
        return
    y_ref, c_ref, bn_ref = LAST_NORM.pop()
    (y,), c, bn = args, c_ref(), bn_ref()
    if not (y_ref() is y and c is not None and bn is not None and isinstance(neuron, LIF)
            and torch.is_grad_enabled() and not torch.is_autocast_enabled(y.device.type)):
        return
    backend = pick_backend(y, neuron.backend)
    if backend not in FUSED_BACKENDS:
        return
    # The hooks live as long as what they saved: they must not hold y (or the BN output would stay alive).
    membrane_shape, dtype, T, dynamics = torch.Size((y.shape[0], y[0].numel())), y.dtype, y.shape[0], neuron.dynamics

    def pack(t: torch.Tensor) -> object:
        return RECOMPUTED_MEMBRANE if t.shape == membrane_shape and t.dtype == dtype else t

    def unpack(saved: object) -> torch.Tensor:
        if saved is not RECOMPUTED_MEMBRANE:
            return saved
        with torch.no_grad():
            mean, var = (None if b is None else torch.zeros_like(b) for b in (bn.running_mean, bn.running_var))
            y_again = nn.functional.batch_norm(c, mean, var, bn.weight, bn.bias, True, 0.0, bn.eps)
            return rebuild_membrane(y_again.reshape(T, -1), dynamics, backend)  # over y_again

    hooks = torch.autograd.graph.saved_tensors_hooks(pack, unpack)
    hooks.__enter__()
    REBUILDING.append((neuron, hooks))


def after_neuron(neuron: Neuron | SpikeSource, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
    """Forward hook (also run when the module raises): end the neuron's rebuild, and remember its spikes."""
    if REBUILDING and REBUILDING[-1][0] is neuron:
        REBUILDING.pop()[1].__exit__(None, None, None)
    if neuron.lean and neuron.spiking and isinstance(out, torch.Tensor) and torch.is_grad_enabled():
        for key in [key for key, ref in SPIKES.items() if ref.expired()]:
            del SPIKES[key]
        SPIKES[out.untyped_storage().data_ptr()] = StorageWeakRef(out.untyped_storage())


def install(model: nn.Module) -> None:
    """Hook the memory plan into every neuron of ``model`` and every :class:`SpikeSource`, switched on
    (:func:`lean` switches it). Once per model: at construction."""
    for module in model.modules():
        if isinstance(module, Neuron):
            module.register_forward_pre_hook(rebuild_after_norm)
        if isinstance(module, (Neuron, SpikeSource)):
            module.register_forward_hook(after_neuron, always_call=True)
    lean(model, True)


def lean(model: nn.Module, on: bool) -> None:
    """Switch the memory plan :func:`install` hooked into ``model`` on or off (``lean`` of each hooked module)."""
    for module in model.modules():
        if isinstance(module, (Neuron, SpikeSource)):
            module.lean = on
