"""Neuron semantics: equality with spikingjelly 2.0.0, backends agree, API contracts."""
import itertools
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kernels import fused_forward, rebuild_membrane, saved_bytes
from neurons import IF, LIF, NEURON_KINDS, Dynamics, Neuron, NeuronSpec, ReLUNeuron, neuron_sequence, pick_backend

ROOT = Path(__file__).resolve().parents[1]

RESETS = (0.0, None, -0.3)  # hard to 0, soft, hard to a non-zero value
LIF_CASES = list(itertools.product((2.0, 3.7), (1.0, 0.5), RESETS, (True, False), (True, False), ("sigmoid", "atan")))
IF_CASES = list(itertools.product((1.0, 0.5), RESETS, (True, False), ("sigmoid", "atan")))


def drive(shape=(8, 3, 5, 4), seed=0) -> torch.Tensor:
    """Input currents that make neurons fire often, and sit near threshold sometimes."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * 1.5 + 0.4


def spikes_and_grad(fn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes of ``fn(x)`` and the input gradient of a random linear read-out of them."""
    x = x.clone().requires_grad_(True)
    s = fn(x)
    w = torch.randn(s.shape, generator=torch.Generator().manual_seed(1))
    (s * w).sum().backward()
    return s.detach(), x.grad


def sj_node(kind: str, tau: float, v_threshold: float, v_reset, decay_input: bool, detach_reset: bool,
            surrogate: str):
    sj = pytest.importorskip("spikingjelly.activation_based.neuron", reason="spikingjelly (requirements.txt) is not installed")
    sg = pytest.importorskip("spikingjelly.activation_based.surrogate", reason="spikingjelly (requirements.txt) is not installed")
    fn = sg.Sigmoid(alpha=4.0) if surrogate == "sigmoid" else sg.ATan(alpha=2.0)
    common = dict(v_threshold=v_threshold, v_reset=v_reset, surrogate_function=fn,
                  detach_reset=detach_reset, step_mode="m")
    if kind == "if":
        return sj.IFNode(**common)
    return sj.LIFNode(tau=tau, decay_input=decay_input, **common)


def run_sj(node, x):
    node.reset()
    return node(x)


@pytest.mark.parametrize("tau,v_threshold,v_reset,decay_input,detach_reset,surrogate", LIF_CASES)
def test_lif_equals_spikingjelly(tau, v_threshold, v_reset, decay_input, detach_reset, surrogate):
    node = sj_node("lif", tau, v_threshold, v_reset, decay_input, detach_reset, surrogate)
    ours = LIF(tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, backend="torch")
    x = drive()
    s_ref, g_ref = spikes_and_grad(lambda z: run_sj(node, z), x)
    s, g = spikes_and_grad(ours, x)
    assert s.sum() > 0 and (s == 0).sum() > 0
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("v_threshold,v_reset,detach_reset,surrogate", IF_CASES)
def test_if_equals_spikingjelly(v_threshold, v_reset, detach_reset, surrogate):
    node = sj_node("if", math.inf, v_threshold, v_reset, False, detach_reset, surrogate)
    ours = IF(v_threshold, v_reset, detach_reset, surrogate, backend="torch")
    x = drive() * 0.5
    s_ref, g_ref = spikes_and_grad(lambda z: run_sj(node, z), x)
    s, g = spikes_and_grad(ours, x)
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-6)


def test_defaults_are_the_papers():
    """docs/reference/models.md "LIF": tau 2, threshold 1, hard reset to 0, input decay, detached reset, sigmoid alpha 4."""
    assert LIF().dynamics == Dynamics(2.0, 1.0, 0.0, True, True, "sigmoid", 4.0)
    assert NeuronSpec("lif")(v_threshold=0.5).dynamics.v_threshold == 0.5
    assert LIF(surrogate="atan").dynamics.alpha == 2.0


def test_dynamics_picks_the_surrogates_alpha_and_if_passes_keywords():
    """``alpha=None`` is the surrogate's default; an explicit alpha wins; IF is LIF at tau = inf, no decay."""
    assert Dynamics(surrogate="atan").alpha == 2.0 and Dynamics().alpha == 4.0
    assert Dynamics(surrogate="atan", alpha=3).alpha == 3.0
    assert IF(0.5, None, False, "atan", backend="fused").dynamics == Dynamics(math.inf, 0.5, None, False, False, "atan", 2.0)
    assert IF(v_threshold=0.5).backend == "auto"
    with pytest.raises(ValueError, match="surrogate"):
        Dynamics(surrogate="erf")


def test_neuron_spec_is_the_one_way_to_build_a_neuron():
    """``NeuronSpec(kind, tau, backend)(v_threshold)``: LIF, IF or the ReLU twin, which takes no arguments."""
    lif = NeuronSpec("lif", 3.0, "torch")(0.5)
    assert type(lif) is LIF and lif.dynamics == Dynamics(3.0, 0.5) and lif.backend == "torch"
    assert type(NeuronSpec("if", 3.0)()) is IF and NeuronSpec("if").spiking
    assert type(NeuronSpec("relu")(0.5)) is ReLUNeuron and not NeuronSpec("relu").spiking
    assert LIF.spiking and not ReLUNeuron.spiking
    with pytest.raises(TypeError):
        ReLUNeuron(v_threshold=0.5)
    with pytest.raises(ValueError, match="fused"):
        NeuronSpec("lif", backend="gpu")


@pytest.mark.parametrize("kind", sorted(NEURON_KINDS))
@pytest.mark.parametrize("dtype", (torch.float32, torch.float64))
def test_shape_dtype_and_statelessness(kind, dtype):
    m = NeuronSpec(kind, tau=2.0)(v_threshold=0.5)
    assert isinstance(m, Neuron)
    x = drive((4, 2, 3, 5, 5)).to(dtype)
    y1, y2 = m(x), m(x)
    assert y1.shape == x.shape and y1.dtype == dtype
    assert torch.equal(y1, y2)


def test_relu_twin():
    x = drive((3, 4))
    assert torch.equal(NeuronSpec("relu", 2.0, "fused")(v_threshold=0.5)(x), x.clamp_min(0))
    assert isinstance(ReLUNeuron(), Neuron)


def test_bad_arguments_name_the_choices():
    with pytest.raises(ValueError, match=r"'if', 'lif', 'relu'"):
        NeuronSpec("plif")
    with pytest.raises(ValueError, match="atan"):
        LIF(surrogate="erf")
    with pytest.raises(ValueError, match="torch"):
        LIF(backend="cupy")
    with pytest.raises(ValueError, match="tau"):
        LIF(tau=0.5)
    with pytest.raises(ValueError, match="fused"):
        neuron_sequence(drive(), Dynamics(), backend="nope")


ALL_CASES = [(tau, thr, v_reset, decay_input, detach_reset, surrogate)
             for tau, thr, v_reset, decay_input, detach_reset, surrogate in
             itertools.product((2.0, 3.7, math.inf), (1.0, 0.5), RESETS, (True, False), (True, False), ("sigmoid", "atan"))
             if not (math.isinf(tau) and decay_input)]  # tau = inf without input decay is IF


@pytest.mark.parametrize("tau,v_threshold,v_reset,decay_input,detach_reset,surrogate", ALL_CASES)
def test_fused_equals_reference_bitwise(tau, v_threshold, v_reset, decay_input, detach_reset, surrogate):
    """The hand-written backward through time gives autograd's spikes and gradients to the last bit."""
    d = Dynamics(tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, 4.0 if surrogate == "sigmoid" else 2.0)
    x = drive((16, 3, 5, 4))
    s_ref, g_ref = spikes_and_grad(lambda z: neuron_sequence(z, d, "torch"), x)
    s, g = spikes_and_grad(lambda z: neuron_sequence(z, d, "fused"), x)
    assert torch.equal(s, s_ref)
    assert torch.equal(g, g_ref)


@pytest.mark.parametrize("dtype", (torch.float64, torch.float16))
@pytest.mark.parametrize("v_reset", RESETS)
def test_fused_equals_reference_bitwise_in_other_dtypes(dtype, v_reset):
    """The hard reset's bitwise AND reads the bits as a same-sized integer (int64, int16): spikes and
    gradients still equal autograd's in float64 and float16."""
    d = Dynamics(v_reset=v_reset)
    x = drive((8, 3, 5, 4)).to(dtype)
    s_ref, g_ref = spikes_and_grad(lambda z: neuron_sequence(z, d, "torch"), x)
    s, g = spikes_and_grad(lambda z: neuron_sequence(z, d, "fused"), x)
    assert s.dtype == dtype and s.sum() > 0 and (s == 0).sum() > 0
    assert torch.equal(s, s_ref) and torch.equal(g, g_ref)


@pytest.mark.parametrize("tau,v_threshold,v_reset,decay_input,detach_reset,surrogate", ALL_CASES)
def test_rebuilt_membrane_is_the_forwards(tau, v_threshold, v_reset, decay_input, detach_reset, surrogate):
    """``rebuild_membrane`` gives ``fused_forward``'s H bit for bit; with ``fused`` it writes H over its
    input (no second [T, N] tensor)."""
    d = Dynamics(tau, v_threshold, v_reset, decay_input, detach_reset, surrogate)
    x = drive((6, 40))
    spikes, h = fused_forward(x, d)
    assert spikes.sum() > 0 and (spikes == 0).sum() > 0
    y = x.clone()
    rebuilt = rebuild_membrane(y, d, "fused")
    assert torch.equal(rebuilt, h) and rebuilt.data_ptr() == y.data_ptr()


@pytest.mark.parametrize("v_reset,detach_reset,ratio", [(0.0, True, 2), (0.0, False, 3), (None, False, 1)])
def test_fused_saves_one_membrane_sequence(v_reset, detach_reset, ratio):
    """The fused node keeps exactly H (``[T, ...]`` float32) alive. Plain autograd keeps H - threshold
    for the surrogate, plus 1 - S for a hard reset, plus H for an undetached hard reset (``ratio``)."""
    lif = LIF(v_reset=v_reset, detach_reset=detach_reset)
    x = drive((8, 4, 16, 6, 6))
    x = x.requires_grad_(True)
    fused = saved_bytes(lambda z: neuron_sequence(z, lif.dynamics, "fused"), x)
    reference = saved_bytes(lambda z: neuron_sequence(z, lif.dynamics, "torch"), x)
    assert fused == x.numel() * 4
    assert reference >= ratio * fused


def test_non_contiguous_input_and_gradient():
    x = drive((6, 5, 4)).transpose(1, 2)
    d = Dynamics()
    s_ref, g_ref = spikes_and_grad(lambda z: neuron_sequence(z, d, "torch"), x)
    s, g = spikes_and_grad(lambda z: neuron_sequence(z, d, "fused"), x)
    assert torch.equal(s, s_ref) and torch.equal(g, g_ref)


TRITON_CHECK = """
import itertools, math, torch
from kernels import fused_backward, fused_forward, triton_kernels
from neurons import Dynamics
forward, backward = triton_kernels()
for tau, thr, v_reset, detach, surrogate in itertools.product((2.0, math.inf), (1.0, 0.5), (0.0, None, -0.3),
                                                               (True, False), ("sigmoid", "atan")):
    d = Dynamics(tau, thr, v_reset, not math.isinf(tau), detach, surrogate, 4.0 if surrogate == "sigmoid" else 2.0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 1500, generator=g) * 1.5 + 0.4
    grad = torch.randn(6, 1500, generator=g)
    s_ref, h_ref = fused_forward(x, d)
    s, h = forward(x, d)
    assert torch.equal(s, s_ref) and torch.equal(h, h_ref), d
    torch.testing.assert_close(backward(grad, h, d), fused_backward(grad, h_ref, d), rtol=1e-5, atol=1e-6)
print("ok")
"""


def test_triton_kernels_in_interpreter():
    """The Triton kernels, run by Triton's CPU interpreter (it must be on before triton is imported,
    hence the subprocess): spikes and H exactly equal the fused path; gradients to 1e-6 absolute or
    1e-5 relative: its exp differs from PyTorch's sigmoid by an ulp, and ``1 - s`` near s = 1 magnifies
    that relative error about 100-fold."""
    pytest.importorskip("triton", reason="Triton is not installed")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", TRITON_CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("tau,v_threshold,v_reset,decay_input,detach_reset,surrogate", ALL_CASES[::5])
def test_triton_equals_reference_on_cuda(tau, v_threshold, v_reset, decay_input, detach_reset, surrogate):
    """On CUDA ``auto`` is Triton: spikes exact; gradients as in the interpreter test (exp differs by ulps)."""
    d = Dynamics(tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, 4.0 if surrogate == "sigmoid" else 2.0)
    x = drive((16, 4, 64, 33)).cuda()
    assert pick_backend(x) == "triton"
    s_ref, g_ref = spikes_and_grad(lambda z: neuron_sequence(z, d, "torch"), x)
    s, g = spikes_and_grad(lambda z: neuron_sequence(z, d, "auto"), x)
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(os.environ.get("NEURONS_TEST_COMPILE") != "1",
                    reason="a cold torch.compile is slow; set NEURONS_TEST_COMPILE=1 to run")
def test_compiled_equals_reference():
    d = Dynamics()
    x = drive((4, 2, 8, 5, 5))
    s_ref, g_ref = spikes_and_grad(lambda z: neuron_sequence(z, d, "torch"), x)
    s, g = spikes_and_grad(lambda z: neuron_sequence(z, d, "compiled"), x)
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-6)
