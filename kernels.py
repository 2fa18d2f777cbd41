"""Fast paths the models call; none of them changes a number.

- :func:`compiled`: a function through ``torch.compile``, falling back to eager if the compiler fails;
- :func:`triton_kernels`: the fused LIF/IF algorithm below as two Triton kernels (CUDA);
- :class:`FusedSequence`: the fused LIF/IF algorithm, all T steps of ``neurons.reference_sequence`` in
  one autograd node with a hand-written backward (:func:`fused_forward`, :func:`fused_backward`), eager,
  compiled or Triton (:data:`FUSED_BACKENDS`); :func:`rebuild_membrane` recomputes its ``H``;
- :func:`saved_as_bytes`: binary tensors (spikes) that autograd saves, kept as one byte per element;
- :func:`spike_conv`: a convolution of spikes through it;
- :class:`MaxPool`: a 3x3 max-pool (channels_last on CPU) whose backward keeps two bytes per output;
- :func:`saved_bytes`: how much autograd keeps for a backward, the measure of all of the above.

This module does not import ``neurons.py`` (which imports it): the neuron kernels read the fields of a
``neurons.Dynamics`` (``tau``, ``v_threshold``, ``v_rest``, ``leaky``, ``decay_input``, ``v_reset``,
``detach_reset``, ``surrogate``, ``alpha``) and call its ``charge`` and ``surrogate_grad``, on whatever
object they are given.
"""
from __future__ import annotations

import contextlib
import functools
import warnings
from typing import TYPE_CHECKING, Callable, Iterator

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

if TYPE_CHECKING:  # annotations only: neurons.py imports this module
    from neurons import Dynamics


@functools.cache
def compiled(fn: Callable) -> Callable:
    """``fn`` through ``torch.compile`` (one fused loop over T), built once per process.

    Shapes are dynamic, so one compile serves every batch and channel count; each new T or neuron
    dynamics compiles once more (cached on disk), and past dynamo's recompile limit the function
    quietly runs eagerly. If the compiler itself fails (no C++ toolchain, say) the eager function is
    used for the rest of the process, with a warning.
    """
    current = [torch.compile(fn, dynamic=True)]

    def run(*args):
        try:
            return current[0](*args)
        except torch._dynamo.exc.BackendCompilerFailed as err:
            warnings.warn(f"torch.compile of {fn.__name__} failed ({err}); running it eagerly")
            current[0] = fn
            return fn(*args)

    return run


@functools.cache
def triton_kernels() -> tuple[Callable, Callable]:
    """Forward and backward of the fused neuron algorithm as Triton kernels, one launch for all T steps.

    Same contract as :func:`fused_forward` / :func:`fused_backward`: ``forward(x, d)`` gives
    spikes and ``H`` for ``x`` ``[T, N]``; ``backward(grad_spikes, h, d)`` the input gradient.
    Triton is imported here, on first use, so CPU-only runs never touch it. Float32 only. Every
    program owns ``BLOCK`` neurons and walks the time axis keeping ``V`` (forward) or ``dL/dV``
    (backward) in registers; ``div_rn`` keeps the divisions IEEE-rounded like PyTorch's.
    """
    import triton
    import triton.language as tl

    @triton.jit
    def forward_kernel(x_ptr, s_ptr, h_ptr, n, T, tau, v_threshold, v_rest, LEAKY: tl.constexpr,
                       DECAY_INPUT: tl.constexpr, SOFT: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        v = tl.zeros([BLOCK], tl.float32) + v_rest
        for t in range(T):
            x = tl.load(x_ptr + t * n + offs, mask=mask, other=0.0)
            if LEAKY:
                if DECAY_INPUT:
                    h = v + tl.math.div_rn(x - (v - v_rest), tau)
                else:
                    h = v - tl.math.div_rn(v - v_rest, tau) + x
            else:
                h = v + x
            fired = h >= v_threshold
            s = fired.to(tl.float32)
            if SOFT:
                v = h - s * v_threshold
            else:
                v = tl.where(fired, v_rest, h)
            tl.store(s_ptr + t * n + offs, s, mask=mask)
            tl.store(h_ptr + t * n + offs, h, mask=mask)

    @triton.jit
    def backward_kernel(gs_ptr, h_ptr, gx_ptr, n, T, tau, v_threshold, v_rest, alpha,
                        LEAKY: tl.constexpr, DECAY_INPUT: tl.constexpr, SOFT: tl.constexpr,
                        DETACH: tl.constexpr, ATAN: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        gv = tl.zeros([BLOCK], tl.float32)  # dL/dV[T-1] = 0: nothing flows back from the last reset
        for i in range(T):
            t = T - 1 - i
            h = tl.load(h_ptr + t * n + offs, mask=mask, other=0.0)
            gs = tl.load(gs_ptr + t * n + offs, mask=mask, other=0.0)
            x = h - v_threshold
            if SOFT:
                if not DETACH:
                    gs = gs - gv * v_threshold
                direct = gv
            else:
                if not DETACH:
                    gs = gs + gv * v_rest - gv * h
                direct = tl.where(x >= 0, 0.0, gv)
            if ATAN:
                z = (1.5707963267948966 * alpha) * x
                gh = tl.math.div_rn(gs * (alpha / 2), 1 + z * z)
            else:
                sg = tl.math.div_rn(1.0, 1.0 + tl.exp(-(alpha * x)))
                gh = gs * alpha * sg * (1 - sg)
            gh = gh + direct
            if LEAKY:
                leak = tl.math.div_rn(gh, tau)
                gv = gh - leak
                gx = leak if DECAY_INPUT else gh
            else:
                gv = gh
                gx = gh
            tl.store(gx_ptr + t * n + offs, gx, mask=mask)

    block = 1024

    def flags(d) -> dict:
        return dict(LEAKY=d.leaky, DECAY_INPUT=d.decay_input, SOFT=d.v_reset is None, BLOCK=block)

    def forward(x: torch.Tensor, d) -> tuple[torch.Tensor, torch.Tensor]:
        spikes, h = torch.empty_like(x), torch.empty_like(x)
        n = x[0].numel()
        forward_kernel[(triton.cdiv(n, block),)](x, spikes, h, n, x.shape[0], d.tau, d.v_threshold,
                                                 d.v_rest, **flags(d))
        return spikes, h

    def backward(grad_spikes: torch.Tensor, h: torch.Tensor, d) -> torch.Tensor:
        grad_x = torch.empty_like(h)
        n = h[0].numel()
        backward_kernel[(triton.cdiv(n, block),)](grad_spikes, h, grad_x, n, h.shape[0], d.tau,
                                                  d.v_threshold, d.v_rest, d.alpha, DETACH=d.detach_reset,
                                                  ATAN=d.surrogate == "atan", **flags(d))
        return grad_x

    return forward, backward


# ----------------------------------------------------------------------------- the fused neuron algorithm
# The same spikes and gradients as neurons.reference_sequence, with one autograd node for all T steps.

def integer_view(t: torch.Tensor) -> torch.Tensor:
    """The bits of float tensor ``t`` as a signed integer tensor of the same element size (a view)."""
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def step_outputs(x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
    """Where a loop over the T steps of ``x`` ``[T, N]`` writes its per-step results: one ``[T, N]`` tensor,
    row ``t`` for step ``t``. Under ``torch.compile`` every write into a row would become a copy of the
    whole tensor, so there it is T separate tensors, stacked once at the end (:func:`stacked`)."""
    if torch.compiler.is_compiling():
        return [torch.empty_like(x[0]) for _ in range(x.shape[0])]
    return torch.empty_like(x)


def stacked(outputs: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """The ``[T, N]`` tensor of what a loop wrote into :func:`step_outputs`."""
    return torch.stack(outputs) if isinstance(outputs, list) else outputs


def fused_steps(x: torch.Tensor, d: Dynamics, hs: torch.Tensor | list[torch.Tensor],
                spikes: torch.Tensor | list[torch.Tensor] | None) -> torch.Tensor | list[torch.Tensor]:
    """All T steps of input ``x`` ``[T, N]`` without a graph, writing ``H[t]`` into ``hs[t]`` and ``S[t]``
    into ``spikes[t]`` (:func:`step_outputs`); returns ``hs``.

    ``hs`` may be ``x`` itself (each step reads ``X[t]`` before writing ``H[t]`` over it), and
    ``spikes=None`` keeps no spikes: that is how a membrane is rebuilt (:func:`rebuild_membrane`).
    Buffers are made once, so the loop allocates nothing. The hard reset to 0, ``where(fired, 0, H)``,
    is a bitwise AND of ``H`` with a mask that is all ones where the neuron did not fire: the same
    bits as ``torch.where``, without its per-element branch (several times slower on CPU at typical
    firing rates).
    """
    v = torch.full_like(x[0], d.v_rest)
    fired = torch.empty_like(integer_view(v))  # 1 where H[t] >= threshold, then 0 there and -1 (all ones) elsewhere
    scratch = torch.empty_like(v) if spikes is None and d.v_reset is None else None
    for t in range(x.shape[0]):
        h = d.charge(v, x[t], out=hs[t])  # H[t] charged straight into its place
        torch.ge(h, d.v_threshold, out=fired)
        if spikes is not None or d.v_reset is None:  # S[t] as 0/1 in H's dtype
            s = (scratch if spikes is None else spikes[t]).copy_(fired)
        if d.v_reset is None:
            torch.sub(h, torch.mul(s, d.v_threshold, out=v), out=v)
        elif d.v_reset == 0:
            torch.bitwise_and(integer_view(h), fired.sub_(1), out=integer_view(v))
        else:
            v = torch.where(fired.bool(), d.v_reset, h)
    return hs


def fused_forward(x: torch.Tensor, d: Dynamics) -> tuple[torch.Tensor, torch.Tensor]:
    """All T steps without a graph: returns spikes and the charged membranes ``H``, both ``[T, ...]``
    (written step by step into their final tensors, :func:`fused_steps`)."""
    spikes = step_outputs(x)
    hs = fused_steps(x, d, step_outputs(x), spikes)
    return stacked(spikes), stacked(hs)


def fused_backward(grad_spikes: torch.Tensor, h: torch.Tensor, d: Dynamics) -> torch.Tensor:
    """Backward through time from the saved ``H``: the input gradient ``[T, ...]``.

    Per step, from ``gv = dL/dV[t]`` (carried back from step t+1) and ``gs = dL/dS[t]``:
    ``dL/dS`` gains the reset's share unless it is detached, ``dL/dH = surrogate(dL/dS) + gv * dV/dH``,
    ``dL/dX = dL/dH / tau`` (input decay) and ``dL/dV[t-1] = dL/dH - dL/dH / tau``. The operations
    mirror what autograd does on ``neurons.reference_sequence`` (same operations, same order), so spikes and
    gradients are the same to the last bit. Per-step results live in buffers made once.
    """
    surrogate = d.surrogate_grad
    grad_x = step_outputs(h)
    x, gh, gv, scratch = (torch.empty_like(h[0]) for _ in range(4))
    below = torch.empty_like(h[0], dtype=torch.bool)
    for t in reversed(range(h.shape[0])):
        h_t, gs = h[t], grad_spikes[t]
        torch.sub(h_t, d.v_threshold, out=x)
        last = t == h.shape[0] - 1  # nothing flows back from the last step's reset
        if not (last or d.detach_reset):
            gs = gs - gv * d.v_threshold if d.v_reset is None else gs + gv * d.v_reset - gv * h_t  # autograd's order
        surrogate(gs, x, d.alpha, out=gh, scratch=scratch)
        if not last:  # + gv * dV/dH: 1 for a soft reset, 1 - S[t] for a hard one
            if d.v_reset is None:
                gh.add_(gv)
            else:
                scratch.copy_(torch.logical_not(torch.ge(x, 0, out=below), out=below))
                gh.add_(scratch.mul_(gv))
        if not d.leaky:
            grad_x[t].copy_(gh)
            gv, gh = gh, gv
            continue
        leak = torch.div(gh, d.tau, out=grad_x[t] if d.decay_input else scratch)
        if not d.decay_input:
            grad_x[t].copy_(gh)
        torch.sub(gh, leak, out=gv)
    return stacked(grad_x)


# backend -> its (forward, backward) pair, built on first use (the backends neurons.FusedSequence runs)
FUSED_BACKENDS: dict[str, Callable[[], tuple[Callable, Callable]]] = {
    "fused": lambda: (fused_forward, fused_backward),
    "compiled": lambda: (compiled(fused_forward), compiled(fused_backward)),
    "triton": triton_kernels,
}


def rebuild_membrane(x: torch.Tensor, d: Dynamics, backend: str) -> torch.Tensor:
    """``H`` of input ``x`` ``[T, N]`` (``fused_forward(x, d)[1]``, same bits) through ``backend``'s
    forward, spikes not kept. With the eager ``fused`` backend ``H`` is written over ``x``, so the
    caller must not need ``x`` again (``memory.rebuild_after_norm`` gives up a BN output it recomputed)."""
    if backend == "fused":
        return fused_steps(x, d, x, None)
    return FUSED_BACKENDS[backend]()[0](x, d)[1]


class FusedSequence(torch.autograd.Function):
    """One autograd node for all T steps with a hand-written backward; saves only ``H``.

    ``backend`` names the pair of functions doing the work (:data:`FUSED_BACKENDS`): ``fused`` (``fused_forward``
    / ``fused_backward`` eagerly), ``compiled`` (the same through ``torch.compile``) or ``triton``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, d: Dynamics, backend: str) -> torch.Tensor:
        forward, _ = FUSED_BACKENDS[backend]()
        spikes, h = forward(x, d)
        ctx.save_for_backward(h)
        ctx.dynamics, ctx.backend = d, backend
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor):
        (h,) = ctx.saved_tensors
        _, backward = FUSED_BACKENDS[ctx.backend]()
        return backward(grad_spikes.contiguous(), h, ctx.dynamics), None, None


def compute_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype a convolution of ``x`` with ``weight`` runs in: autocast's, when it is on, else the weight's."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return weight.dtype


def covers_storage(t: torch.Tensor) -> bool:
    """``t`` views each element of its storage exactly once: contiguous, or a permutation of a
    contiguous tensor's dimensions (such as attention heads split off and transposed)."""
    if t.storage_offset() or t.numel() * t.element_size() != t.untyped_storage().nbytes():
        return False
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride()), key=lambda pair: pair[1]):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True


@contextlib.contextmanager
def saved_as_bytes(*binary: torch.Tensor) -> Iterator[None]:
    """Inside, autograd keeps every saved tensor that views one of the ``binary`` tensors as one byte
    per element (``torch.bool``) and rebuilds it, same dtype, shape, strides and offset, for the backward.

    ``binary`` must hold only 0 and 1 (a spiking neuron's output): those are exact in every float
    dtype, so ``bool -> dtype`` gives back the same bits, the backward runs autograd's own kernels on
    the same layout, and every gradient is bit-identical. A layer keeps its input in the compute dtype
    for the weight gradient (4 bytes per element in float32); this keeps 1. Tensors that do not cover
    their storage exactly are left alone, as is anything autograd saves that is not a view of them
    (such as autocast's own low-precision copy: cast first, as :func:`spike_conv` does). The byte copy
    of a tensor is made once, however many views of it are saved. Tensors are recognised by their
    storage's address, so the ``binary`` tensors must stay alive inside (a layer's inputs do).
    """
    # Storage address -> dtype. The hooks live as long as what they saved, so they must not hold the
    # float tensors themselves: that would keep exactly what this is meant to free.
    dtypes = {t.untyped_storage().data_ptr(): t.dtype for t in binary if covers_storage(t)}
    as_bytes: dict[int, torch.Tensor] = {}

    def pack(t: torch.Tensor) -> torch.Tensor | tuple:
        key = t.untyped_storage().data_ptr()
        if dtypes.get(key) != t.dtype:
            return t
        if key not in as_bytes:
            whole = t.detach().as_strided((t.untyped_storage().nbytes() // t.element_size(),), (1,), 0)
            as_bytes[key] = whole.to(torch.bool)
        return as_bytes[key], t.dtype, t.shape, t.stride(), t.storage_offset()

    def unpack(saved: torch.Tensor | tuple) -> torch.Tensor:
        if isinstance(saved, torch.Tensor):
            return saved
        flat, dtype, shape, stride, offset = saved
        return flat.to(dtype).as_strided(shape, stride, offset)

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield


def spike_conv(conv: nn.Conv1d | nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for binary ``x`` (a spiking neuron's output), keeping ``x`` as one byte per element
    for the backward (:func:`saved_as_bytes`): same outputs, same gradients, bit for bit.

    ``x`` is first cast to the dtype the convolution runs in (autocast's, under AMP), which is what
    autocast would do, so that the tensor the convolution saves is the one kept as bytes. Without
    autograd (inference, or nothing needing a gradient) it is ``conv(x)`` itself.
    """
    if not (torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad)):
        return conv(x)
    x = x.to(compute_dtype(x, conv.weight))
    with saved_as_bytes(x):
        return conv(x)


def window_starts(shape: torch.Size, width: int, stride: int, device: torch.device) -> torch.Tensor:
    """``[H_out, W_out]``: the flat input position (``row * width + column``) of the top-left corner of
    every output's 3x3 window (padding 1, so the first window starts at row -1, column -1)."""
    rows = torch.arange(shape[-2], device=device) * stride - 1
    cols = torch.arange(shape[-1], device=device) * stride - 1
    return rows[:, None] * width + cols


def window_offsets(indices: torch.Tensor, width: int, stride: int) -> torch.Tensor:
    """Max-pool argmax ``indices`` (flat positions in the input plane of a 3x3 pool, padding 1) as
    ``int16`` offsets from each output's window corner (0 to ``2 * width + 2``), 2 bytes instead of 8;
    :func:`window_indices` inverts it. Works in place on ``indices`` (one subtraction, one narrowing)."""
    return indices.sub_(window_starts(indices.shape, width, stride, indices.device)).to(torch.int16)


def window_indices(offsets: torch.Tensor, width: int, stride: int) -> torch.Tensor:
    """The flat int64 argmax indices that :func:`window_offsets` made into offsets."""
    return offsets.to(torch.int64).add_(window_starts(offsets.shape, width, stride, offsets.device))


def sample_chunk(shape: torch.Size, element_size: int) -> int:
    """How many samples of a tensor of ``shape`` (``element_size`` bytes each element) make about 4 MiB:
    the CPU max-pool works on that many at a time, so that its temporary tensors are small (reused by
    the allocator, not fresh pages) wherever the batch is big."""
    return max(1, 2 ** 22 // max(1, shape[1:].numel() * element_size))


def max_pool(x: torch.Tensor, stride: int, keep_argmax: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """3x3 max-pool (padding 1) of ``x`` ``[N, C, H, W]``: the contiguous output and, if ``keep_argmax``,
    where each maximum was (:func:`window_offsets`, or int64 indices for planes too wide for int16).

    On CPU the pool runs in channels_last, :func:`sample_chunk` samples at a time: PyTorch's
    channels_last CPU kernel vectorises over channels and was about twice as fast as the NCHW one
    here, layout copies included (bench/README.md, "Max-pool"). The maximum is exact and both kernels
    scan each window in the same order, keeping the first maximum (or NaN), so values and indices are
    NCHW's (tests/test_models.py).
    """
    width, narrow = x.shape[-1], 2 * x.shape[-1] + 2 <= torch.iinfo(torch.int16).max
    if x.device.type != "cpu":
        y, indices = torch.ops.aten.max_pool2d_with_indices(x, [3, 3], [stride, stride], [1, 1])
        return y, (window_offsets(indices, width, stride) if narrow else indices) if keep_argmax else None
    y = x.new_empty((*x.shape[:2], *((n - 1) // stride + 1 for n in x.shape[-2:])))  # (n + 2 - 3) // s + 1
    where = torch.empty(y.shape, dtype=torch.int16 if narrow else torch.int64) if keep_argmax else None
    step = sample_chunk(x.shape, x.element_size())
    for i in range(0, x.shape[0], step):
        part = x[i:i + step].contiguous(memory_format=torch.channels_last)
        if where is None:
            y[i:i + step] = nn.functional.max_pool2d(part, 3, stride, 1)
            continue
        y[i:i + step], indices = torch.ops.aten.max_pool2d_with_indices(part, [3, 3], [stride, stride], [1, 1])
        where[i:i + step] = window_offsets(indices, width, stride) if narrow else indices
    return y, where


def max_pool_backward(grad: torch.Tensor, where: torch.Tensor, shape: torch.Size, stride: int) -> torch.Tensor:
    """The input gradient of :func:`max_pool` from what it kept (``where``) and the input's ``shape``:
    PyTorch's own backward kernel on the same int64 indices, so the same bits. On CPU the indices are
    rebuilt :func:`sample_chunk` samples at a time and the kernel writes each part straight into the
    result, so no full-size int64 index tensor is made."""
    step = sample_chunk(shape, grad.element_size()) if grad.device.type == "cpu" else shape[0]
    grad_x = grad.new_empty(shape)
    for i in range(0, shape[0], step):
        part = where[i:i + step]
        indices = part if part.dtype == torch.int64 else window_indices(part, shape[-1], stride)
        shape_only = grad.new_empty(()).expand(part.shape[0], *shape[1:])  # the kernel reads the input's shape only
        torch.ops.aten.max_pool2d_with_indices_backward.grad_input(
            grad[i:i + step], shape_only, [3, 3], [stride, stride], [1, 1], [1, 1], False, indices,
            grad_input=grad_x[i:i + step])
    return grad_x


class MaxPoolFunction(torch.autograd.Function):
    """3x3 max-pool, padding 1, whose backward keeps two bytes per output: where in its window the
    maximum was. Autograd's own max-pool keeps its input, which the backward reads only for its shape,
    and an int64 index per output; the backward here rebuilds the same indices and calls the same
    kernel, so outputs and gradients are the same bits. Planes wider than 16382 columns (whose
    offsets would not fit ``int16``) keep the int64 indices."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, stride: int) -> torch.Tensor:
        y, where = max_pool(x, stride, keep_argmax=True)
        ctx.save_for_backward(where)
        ctx.shape, ctx.stride = x.shape, stride
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (where,) = ctx.saved_tensors
        return max_pool_backward(grad.contiguous(), where, ctx.shape, ctx.stride), None


class MaxPool(nn.MaxPool2d):
    """``nn.MaxPool2d(3, stride, 1)`` that keeps two bytes per output for the backward (:class:`MaxPoolFunction`)."""

    def __init__(self, stride: int) -> None:
        super().__init__(3, stride, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return MaxPoolFunction.apply(x, self.stride)
        return max_pool(x, self.stride, keep_argmax=False)[0]


class NewStorages(TorchDispatchMode):
    """Inside, records a weak reference to (and the size of) the storage of every tensor an operation creates."""

    def __init__(self) -> None:
        super().__init__()
        self.created: dict[int, tuple[StorageWeakRef, int]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            fresh = key not in self.created or self.created[key][0].expired()  # an address may be reused
            if key not in inputs and fresh:  # a view of an input is not a new storage
                self.created[key] = StorageWeakRef(storage), storage.nbytes()
        return out

    def alive(self) -> dict[int, int]:
        """Data pointer -> bytes of the recorded storages that are still alive."""
        return {key: n for key, (ref, n) in self.created.items() if not ref.expired()}


def saved_bytes(fn: Callable[..., torch.Tensor], *args: torch.Tensor) -> int:
    """Bytes a training forward ``fn(*args)`` leaves in memory for the backward, parameters aside, each
    storage counted once: what autograd saves, and whatever else the forward made that is still
    alive when it returns (what a saved-tensor hook keeps instead, or a leak), its return value excepted.

    How the memory savings of this module, of the fused neurons and of ``memory.py``
    are measured (tests and bench/). Tensors from outside ``fn`` that autograd saves under one of
    those hooks are not seen (only the innermost saved-tensor hook runs); they are parameters.
    """
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if not isinstance(t, nn.Parameter):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    recorder = NewStorages()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), recorder:
        out = fn(*args)
    returned = {t.untyped_storage().data_ptr() for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)}
    alive = {key: n for key, n in recorder.alive().items() if key not in returned}
    return sum({**alive, **storages}.values())
