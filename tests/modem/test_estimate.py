"""Per-client channel estimation from the code-orthogonal sounding frame.

Exact, noise-free recovery first; then, with white Gaussian noise, the estimator's error statistics
against theory: gain error variance noise_power / (N * amplitude^2), unbiased noise-power estimate.
"""

from __future__ import annotations

import numpy as np
import pytest

from airfl.modem.estimate import estimate_channels
from airfl.modem.frame import SoundingLayout


def _received(lay: SoundingLayout, gains, delays, amplitude=1.0, extra=0) -> np.ndarray:
    """The window at the scheduled sounding time: sum of every client's pilot through h_k, delayed by d_k."""
    out = np.zeros(lay.burst_length + extra, dtype=np.complex128)
    for k, (h, d) in enumerate(zip(gains, delays)):
        pilot = lay.pilot(k, amplitude)
        n = min(len(pilot), len(out) - d)
        out[d : d + n] += h * pilot[:n]
    return out


def _noise(rng: np.random.Generator, n: int, power: float) -> np.ndarray:
    return np.sqrt(power / 2) * (rng.standard_normal(n) + 1j * rng.standard_normal(n))


def _rayleigh(rng: np.random.Generator, k: int) -> np.ndarray:
    return (rng.standard_normal(k) + 1j * rng.standard_normal(k)) / np.sqrt(2)


@pytest.mark.parametrize("k", [1, 2, 5, 10, 20])
def test_noise_free_exact_recovery(k):
    """Without noise, gains and integer delays (including 0 and cp) come back exactly, noise estimate ~ 0."""
    rng = np.random.default_rng(100 + k)
    lay = SoundingLayout(k)
    gains = _rayleigh(rng, k)
    delays = rng.integers(0, lay.cp + 1, k)
    delays[0] = lay.cp
    if k > 1:
        delays[1] = 0
    est = estimate_channels(_received(lay, gains, delays, extra=lay.cp), lay)
    np.testing.assert_allclose(est.gains, gains, rtol=1e-9)
    np.testing.assert_array_equal(est.delays, delays)
    assert est.delays.dtype == np.int64
    assert est.noise_power < 1e-20
    assert np.all(est.snr_db > 150)


def test_every_delay_in_the_cyclic_prefix_is_resolved():
    """Each delay 0..cp for a lone client is found exactly (the cyclic prefix keeps it circular)."""
    lay = SoundingLayout(1, cp=8, min_shift=14, min_length=31)
    for d in range(lay.cp + 1):
        est = estimate_channels(_received(lay, [0.3 - 0.7j], [d]), lay)
        assert est.delays[0] == d
        assert est.gains[0] == pytest.approx(0.3 - 0.7j, rel=1e-9)


def test_pilot_amplitude_is_divided_out():
    """Pilots sent at amplitude A give h_k, not A*h_k, when A is passed to the estimator."""
    rng = np.random.default_rng(7)
    lay = SoundingLayout(4)
    gains = _rayleigh(rng, 4)
    est = estimate_channels(_received(lay, gains, [0, 3, 5, 16], amplitude=0.316), lay, pilot_amplitude=0.316)
    np.testing.assert_allclose(est.gains, gains, rtol=1e-9)


def test_silent_client_reads_as_zero_gain():
    """A client that did not transmit gets a (numerically) zero gain, not another client's energy."""
    lay = SoundingLayout(3)
    est = estimate_channels(_received(lay, [1.0, 0.0, 0.5j], [2, 0, 7]), lay)
    assert abs(est.gains[1]) < 1e-12
    np.testing.assert_allclose(est.gains[[0, 2]], [1.0, 0.5j], rtol=1e-9)


def test_window_length_checked():
    """A window shorter than cp + N cannot hold the pilot and is refused."""
    lay = SoundingLayout(2)
    with pytest.raises(ValueError, match="cp \\+ N"):
        estimate_channels(np.zeros(lay.burst_length - 1, dtype=complex), lay)


@pytest.mark.parametrize("k,amplitude", [(1, 1.0), (5, 0.5), (10, 1.0)])
def test_gain_error_variance_matches_theory(k, amplitude):
    """With noise of power s2, each gain estimate is h_k + e_k, e_k ~ CN(0, s2 / (N A^2)), unbiased.

    Checked over many independent soundings (within 20% on the variance); delays stay exact at this SNR.
    """
    rng = np.random.default_rng(200 + k)
    lay = SoundingLayout(k)
    s2 = 0.2
    trials = max(1, 1500 // k)
    errors = []
    for _ in range(trials):
        # |h| in [0.5, 1.5], random phase: away from deep fades, so the peak bin is unambiguous
        gains = rng.uniform(0.5, 1.5, k) * np.exp(2j * np.pi * rng.random(k))
        delays = rng.integers(0, lay.cp + 1, k)
        rx = _received(lay, gains, delays, amplitude) + _noise(rng, lay.burst_length, s2)
        est = estimate_channels(rx, lay, pilot_amplitude=amplitude)
        np.testing.assert_array_equal(est.delays, delays)
        errors.append(est.gains - gains)
    e = np.concatenate(errors)
    theory = s2 / (lay.length * amplitude**2)
    assert np.mean(np.abs(e) ** 2) == pytest.approx(theory, rel=0.2)
    assert abs(np.mean(e)) < 4 * np.sqrt(theory / e.size)  # no bias beyond 4 standard errors


@pytest.mark.parametrize("k", [1, 5, 20])
def test_noise_power_estimate_is_unbiased(k):
    """The noise estimate from the bins outside every client's response averages to the true power (10%)."""
    rng = np.random.default_rng(300 + k)
    lay = SoundingLayout(k)
    s2 = 0.05
    estimates = []
    for _ in range(200):
        gains = _rayleigh(rng, k)
        delays = rng.integers(0, lay.cp + 1, k)
        rx = _received(lay, gains, delays) + _noise(rng, lay.burst_length, s2)
        estimates.append(estimate_channels(rx, lay).noise_power)
    assert np.mean(estimates) == pytest.approx(s2, rel=0.1)
    assert np.median(estimates) == pytest.approx(s2, rel=0.1)


def test_snr_is_gain_over_noise():
    """Reported SNR is 10*log10(|h_k|^2 / noise estimate) for unit-power pilots."""
    rng = np.random.default_rng(9)
    lay = SoundingLayout(3)
    rx = _received(lay, [1.0, 0.1, 0.5j], [0, 1, 2]) + _noise(rng, lay.burst_length, 1e-3)
    est = estimate_channels(rx, lay)
    np.testing.assert_allclose(est.snr_db, 10 * np.log10(np.abs(est.gains) ** 2 / est.noise_power), rtol=1e-12)
    np.testing.assert_allclose(est.snr_db, [30, 10, 24], atol=1.5)
