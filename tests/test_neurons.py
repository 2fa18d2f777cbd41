"""Neuron semantics: equality with spikingjelly 2.0.0, backends agree, API contracts."""
import itertools
import math

import pytest
import torch

from neurons import IF, LIF, NEURONS, Dynamics, Neuron, ReLUNeuron, make_neuron, neuron_sequence

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
    sj = pytest.importorskip("spikingjelly.activation_based.neuron")
    sg = pytest.importorskip("spikingjelly.activation_based.surrogate")
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
    """MODELS.md "LIF": tau 2, threshold 1, hard reset to 0, input decay, detached reset, sigmoid alpha 4."""
    assert LIF().dynamics == Dynamics(2.0, 1.0, 0.0, True, True, "sigmoid", 4.0)
    assert make_neuron("lif", v_threshold=0.5).v_threshold == 0.5
    assert LIF(surrogate="atan").alpha == 2.0


@pytest.mark.parametrize("kind", sorted(NEURONS))
@pytest.mark.parametrize("dtype", (torch.float32, torch.float64))
def test_shape_dtype_and_statelessness(kind, dtype):
    m = make_neuron(kind, v_threshold=0.5, tau=2.0)
    assert isinstance(m, Neuron)
    x = drive((4, 2, 3, 5, 5)).to(dtype)
    y1, y2 = m(x), m(x)
    assert y1.shape == x.shape and y1.dtype == dtype
    assert torch.equal(y1, y2)


def test_relu_twin():
    x = drive((3, 4))
    assert torch.equal(make_neuron("relu", v_threshold=0.5, tau=2.0, backend="fused")(x), x.clamp_min(0))
    assert isinstance(ReLUNeuron(), Neuron)


def test_bad_arguments_name_the_choices():
    with pytest.raises(ValueError, match=r"'if', 'lif', 'relu'"):
        make_neuron("plif")
    with pytest.raises(ValueError, match="atan"):
        LIF(surrogate="erf")
    with pytest.raises(ValueError, match="torch"):
        LIF(backend="cupy")
    with pytest.raises(ValueError, match="tau"):
        LIF(tau=0.5)
    with pytest.raises(ValueError, match="fused"):
        neuron_sequence(drive(), Dynamics(), backend="nope")
