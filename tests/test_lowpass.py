"""The paper's core claim (section 3.1): spiking neurons are low-pass filters, max-pooling is not.

Three levels: the linear theory of the membrane (exact), the rate response of the actual spiking
modules (statistical, fixed seeds), and the spatial spectrum after max- vs avg-pooling spike maps.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from neurons import IF, LIF, lif_transfer, membrane

N = 256  # samples per period of the measuring window; frequencies sit exactly on DFT bins
BINS = (2, 16, 64, 112, 128)  # w = 2 pi k / N: pi/64, pi/8, pi/2, 7pi/8, pi (Nyquist)


def measured_gain(system, k: int, n: int = N) -> float:
    """Gain of a linear time-invariant ``system`` at ``w = 2 pi k / n``, from its steady state.

    Drive it with ``cos(w t)`` for 4 periods of ``n`` steps, keep the last ``n`` steps (the transient
    ``b^t`` has died out, the response is periodic), and divide the DFT magnitudes at bin ``k``.
    """
    t = torch.arange(4 * n, dtype=torch.float64)
    x = torch.cos(2 * math.pi * k * t / n)
    y = system(x[:, None])[-n:, 0]
    return (torch.fft.rfft(y)[k].abs() / torch.fft.rfft(x[-n:])[k].abs()).item()


@pytest.mark.parametrize("tau", (1.5, 2.0, 4.0, 16.0))
def test_lif_membrane_is_the_first_order_low_pass(tau):
    """Measure: steady-state gain of the sub-threshold LIF membrane (``neurons.membrane``) at 5
    frequencies from pi/64 to pi. Threshold: within 1% of ``(1-b)/sqrt(1 - 2b cos w + b^2)``,
    ``b = 1 - 1/tau`` (eq. 6), and falling monotonically with frequency (a low-pass filter)."""
    gains = [measured_gain(lambda x: membrane(x, tau), k) for k in BINS]
    theory = [lif_transfer(2 * math.pi * k / N, tau).item() for k in BINS]
    for g, h in zip(gains, theory):
        assert g == pytest.approx(h, rel=0.01)
    assert all(a > b for a, b in zip(gains, gains[1:]))


def test_if_membrane_is_the_integrator():
    """Measure: steady-state gain of the IF membrane (``tau = inf``). Threshold: within 1% of
    ``|1/(1 - e^-jw)| = 1/(2 sin(w/2))`` at 5 frequencies; a zero-mean periodic input keeps the running
    sum periodic, so the measurement is exact up to rounding."""
    for k in BINS:
        w = 2 * math.pi * k / N
        assert measured_gain(lambda x: membrane(x, math.inf), k) == pytest.approx(1 / (2 * math.sin(w / 2)), rel=0.01)
        assert lif_transfer(w, math.inf).item() == pytest.approx(1 / (2 * math.sin(w / 2)), rel=1e-12)


@pytest.mark.parametrize("stages", (2, 4))
def test_cascade_multiplies_the_attenuation(stages):
    """Measure: gain of ``stages`` LIF membranes (tau = 2) in series. Threshold: within 1% of
    ``|H|^stages`` (eq. 12); at Nyquist that is 3^-stages, so depth removes high frequencies fast."""
    def cascade(x):
        for _ in range(stages):
            x = membrane(x, 2.0)
        return x

    for k in BINS:
        assert measured_gain(cascade, k) == pytest.approx(lif_transfer(2 * math.pi * k / N, 2.0, stages).item(), rel=0.01)
    assert lif_transfer(math.pi, 2.0, stages).item() == pytest.approx(3.0 ** -stages)


def rate_gain_ratio(neuron, trials: int = 2000, steps: int = 1024, seed: int = 0) -> float:
    """Relative rate gain ``G(w_high) / G(w_low)`` of a spiking ``neuron``.

    Input ``X[t] = 0.1 cos(w t) + 0.5 * noise`` (standard normal, independent per trial and step);
    the trials are the batch dimension. ``G(w)`` = DFT amplitude at ``w`` of the trial-averaged spike
    train over the input amplitude 0.1. ``w_low = 2 pi 8 / steps`` (pi/64), ``w_high = 2 pi 480 / steps``
    (15 pi/16, near Nyquist). Both frequencies run in the same call as two slices of the batch.
    """
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(steps, dtype=torch.float64)
    w = 2 * math.pi * torch.tensor([8, 480], dtype=torch.float64) / steps
    drive = 0.1 * torch.cos(w[None, :] * t[:, None])  # [steps, 2]
    x = drive[:, :, None] + 0.5 * torch.randn(steps, 2, trials, generator=g, dtype=torch.float64)
    rate = neuron(x.float()).double().mean(-1)  # [steps, 2]: trial-averaged spike trains
    gain = [torch.fft.rfft(rate[:, i])[k].abs() * 2 / steps / 0.1 for i, k in enumerate((8, 480))]
    return (gain[1] / gain[0]).item()


def test_spiking_neurons_pass_less_high_frequency_the_longer_they_remember():
    """Measure: ``rate_gain_ratio`` (high-over-low relative gain of the trial-averaged spike rate) of
    IF, LIF(tau=4) and LIF(tau=2), threshold 1, hard reset, 2000 trials x 1024 steps, seed 0.

    All three use ``decay_input=False`` so the input couples to the membrane identically (IF has no
    input decay); the only difference is the leak. With the paper's ``decay_input=True`` the input
    is scaled by 1/tau and LIF(tau=4) would rarely fire at this noise level.

    Threshold: IF < LIF(4) < LIF(2), each at least 1.2x apart. Seen: about 0.16 / 0.33 / 0.47 (spread
    over seeds about +-0.02), i.e. the neurons are low-pass filters and a longer memory (larger tau,
    IF = infinite) attenuates high frequencies more, as eq. 6 predicts for the membrane.
    """
    ratios = [rate_gain_ratio(n) for n in (IF(), LIF(tau=4.0, decay_input=False), LIF(tau=2.0, decay_input=False))]
    assert all(r < 1 for r in ratios), ratios  # every neuron attenuates the high frequency
    assert 1.2 * ratios[0] < ratios[1] and 1.2 * ratios[1] < ratios[2], ratios


def high_frequency_share(maps: torch.Tensor) -> float:
    """Share of spatial spectral energy above half the Nyquist frequency, DC excluded.

    ``P(fy, fx) = sum over maps |FFT2(map)|^2`` on the DFT grid ``fx, fy`` in cycles/pixel, [-0.5, 0.5).
    Share = ``sum P over sqrt(fx^2 + fy^2) > 0.25`` / ``sum P over all (fx, fy) != (0, 0)``.
    White noise gives 1 - pi/16 = 0.80 (the share of the square outside that circle).
    """
    power = (torch.fft.fft2(maps.double()).abs() ** 2).flatten(0, -3).sum(0)
    f = torch.fft.fftfreq(maps.shape[-1], dtype=torch.float64)
    fy, fx = torch.meshgrid(f, f, indexing="ij")
    power[0, 0] = 0
    return (power[(fx ** 2 + fy ** 2).sqrt() > 0.25].sum() / power.sum()).item()


def test_max_pool_keeps_more_high_frequency_than_avg_pool():
    """Measure: ``high_frequency_share`` of 64 binary random spike maps 64x64 (rate 0.2, seed 0) after a
    stride-1 3x3 max-pool and after a stride-1 3x3 avg-pool (padding 1, ``count_include_pad=False``,
    as the Max/Avg mixers of docs/reference/models.md). Threshold: max-pool share > 1.5 x avg-pool share. Seen: 0.44
    vs 0.20 (the input itself: 0.81). Avg-pool is a linear low-pass filter; max-pool is not linear
    and keeps sharp edges, the paper's argument for max-pooling in the patch embeddings and mixers."""
    spikes = (torch.rand(64, 1, 64, 64, generator=torch.Generator().manual_seed(0)) < 0.2).float()
    shares = [high_frequency_share(spikes),
              high_frequency_share(F.max_pool2d(spikes, 3, 1, 1)),
              high_frequency_share(F.avg_pool2d(spikes, 3, 1, 1, count_include_pad=False))]
    assert shares[0] == pytest.approx(1 - math.pi / 16, abs=0.02)
    assert shares[1] > 1.5 * shares[2], shares
