"""Sounding estimation beyond integer delays: per-client CFO from repeated periods, fractional delays,
and the tap vector (for OFDM).

Received soundings are built by hand: client k's pilot through gain h_k, integer delay d_k, a CFO
exp(j 2 pi eps_k n) in the receiver's local time (n = 0 at the scheduled sounding start), and a
band-limited fractional delay (exact: a linear phase on the periodic pilot's DFT).
Noise-free recovery first, then the CFO estimate's variance against tracking.residual_cfo_variance.
"""

from __future__ import annotations

import numpy as np
import pytest

from airfl.modem.cfo import nco
from airfl.modem.estimate import estimate_channels, fractional_offset
from airfl.modem.frame import PRECURSOR, SoundingLayout
from airfl.modem.timing import PAD, fractional_delay
from airfl.modem.tracking import residual_cfo_variance


def _received(lay: SoundingLayout, gains, delays, cfos=None, fractions=None, channels=None) -> np.ndarray:
    """Window at the scheduled sounding time (burst_length + cp samples).

    fractions: per-client fractional delay (samples), applied to the periodic pilot exactly.
    channels: per-client FIR taps at integer lags 0.. (after the integer delay), instead of a single gain.
    """
    n = lay.length
    out = np.zeros(lay.burst_length + lay.cp, dtype=np.complex128)
    freqs = np.fft.fftfreq(n)
    for k in range(len(delays)):
        seq = np.roll(lay.base, k * lay.shift)
        if fractions is not None:
            seq = np.fft.ifft(np.fft.fft(seq) * np.exp(-2j * np.pi * freqs * fractions[k]))
        burst = np.concatenate([seq[n - lay.cp :], *([seq] * lay.repeats)])
        taps = [gains[k]] if channels is None else channels[k]
        contribution = np.zeros(len(out), dtype=np.complex128)
        for lag, c in enumerate(taps):
            start = delays[k] + lag
            m = min(len(burst), len(out) - start)
            contribution[start : start + m] += c * burst[:m]
        if cfos is not None:
            contribution *= nco(len(out), cfos[k])
        out += contribution
    return out


def _noise(rng: np.random.Generator, n: int, power: float) -> np.ndarray:
    return np.sqrt(power / 2) * (rng.standard_normal(n) + 1j * rng.standard_normal(n))


def _unit_gains(rng: np.random.Generator, k: int) -> np.ndarray:
    return rng.uniform(0.5, 1.5, k) * np.exp(2j * np.pi * rng.random(k))


# ------------------------------------------------------------------ CFO


def test_single_period_reports_zero_cfo():
    """repeats == 1 cannot see a CFO: est.cfo is all zeros."""
    lay = SoundingLayout(3)
    est = estimate_channels(_received(lay, [1.0, 0.5j, -0.7], [0, 3, 9], cfos=[1e-4, -2e-4, 0.0]), lay)
    np.testing.assert_array_equal(est.cfo, np.zeros(3))


@pytest.mark.parametrize("repeats", [2, 3])
@pytest.mark.parametrize("fraction_of_range", [-0.9, -0.3, 1e-3, 0.2, 0.9])
def test_single_client_cfo_is_exact_within_the_unambiguous_range(repeats, fraction_of_range):
    """A lone client's CFO anywhere in +-1/(2N) comes back exactly, and its gain (local time 0, CFO removed) to 1e-4."""
    # Every period rotates by exactly exp(j 2 pi eps N).
    lay = SoundingLayout(1, repeats=repeats)
    n = lay.length
    eps = fraction_of_range / (2 * n)
    h = 0.8 * np.exp(0.4j)
    est = estimate_channels(_received(lay, [h], [5], cfos=[eps]), lay)
    assert est.cfo[0] == pytest.approx(eps, rel=1e-9, abs=1e-15)
    assert est.delays[0] == 5
    # The in-period correlation loss (a Dirichlet factor) is undone too: for the root-1 pilot a CFO of eps
    # spreads the response exactly like a delay of eps*N, and the sinc compensation of that apparent
    # fraction restores the amplitude (to 1e-4 for small offsets; near the edge of the range the
    # Dirichlet shape departs from the sinc the fractional estimator assumes: 2 %).
    assert est.gains[0] == pytest.approx(h, rel=1e-4 if abs(fraction_of_range) < 0.1 else 2e-2)


def test_cfo_biases_the_fractional_delay_by_at_most_eps_n():
    """Root-1 Zadoff-Chu couples time and frequency: a CFO eps reads as a delay of up to eps*N samples."""
    lay = SoundingLayout(1, repeats=2)
    n = lay.length
    for x in (-0.3, -0.05, 0.02, 0.2):  # eps * N
        est = estimate_channels(_received(lay, [1.0], [4], cfos=[x / n]), lay)
        assert abs(est.delays[0] + est.fractional[0] - 4) <= abs(x) * 1.01


@pytest.mark.parametrize("repeats", [2, 3])
@pytest.mark.parametrize("k", [3, 6])
def test_per_client_cfo_noise_free(repeats, k):
    """Several clients with their own small CFOs: every CFO to 1e-10 cycles/sample, gains to 1e-4, delays exact."""
    # |eps| <= 1e-3/(2N); the residual error is other clients' leakage (measured 2e-11).
    rng = np.random.default_rng(10 * repeats + k)
    lay = SoundingLayout(k, repeats=repeats)
    n = lay.length
    gains = _unit_gains(rng, k)
    delays = rng.integers(0, lay.cp + 1, k)
    cfos = rng.uniform(-1, 1, k) * 1e-3 / (2 * n)
    est = estimate_channels(_received(lay, gains, delays, cfos=cfos), lay)
    np.testing.assert_allclose(est.cfo, cfos, rtol=0, atol=1e-10)  # measured 2e-11 (cross-client leakage)
    np.testing.assert_allclose(est.gains, gains, rtol=1e-4)
    np.testing.assert_array_equal(est.delays, delays)


def test_gains_with_cfo_are_referred_to_local_time_zero():
    """A transmitter that pre-corrects the measured CFO from local time 0 arrives with est.gains, even far later."""
    lay = SoundingLayout(1, repeats=2)
    eps, h = 3e-4, 1.2 * np.exp(-2.0j)
    est = estimate_channels(_received(lay, [h], [0], cfos=[eps]), lay)
    for later in (0, 5000, 10**6):
        arriving = h * nco(1, eps, later)[0] * np.conj(nco(1, est.cfo[0], later)[0])
        assert arriving == pytest.approx(est.gains[0], rel=1e-4)


@pytest.mark.parametrize("snr_db", [0.0, 10.0])
def test_cfo_variance_matches_the_formula_for_two_periods(snr_db):
    """repeats=2: the CFO error variance is residual_cfo_variance(N, 2, snr) within 30%, and unbiased."""
    rng = np.random.default_rng(int(snr_db) + 1)
    lay = SoundingLayout(1, repeats=2)
    n, s2 = lay.length, 10 ** (-snr_db / 10)
    errors = []
    for _ in range(1000):
        eps = rng.uniform(-0.1, 0.1) / (2 * n)
        rx = _received(lay, [np.exp(2j * np.pi * rng.random())], [3], cfos=[eps])
        errors.append(estimate_channels(rx + _noise(rng, len(rx), s2), lay).cfo[0] - eps)
    e = np.asarray(errors)
    theory = float(residual_cfo_variance(n, 2, 1.0 / s2))
    assert np.var(e) == pytest.approx(theory, rel=0.3)
    assert abs(np.mean(e)) < 4 * np.sqrt(theory / e.size)


def test_cfo_variance_matches_the_formula_for_three_periods():
    """repeats=3 at 10 dB: the measured CFO error variance is residual_cfo_variance(N, 3, snr) within 30%."""
    rng = np.random.default_rng(33)
    lay = SoundingLayout(1, repeats=3)
    n, s2 = lay.length, 0.1
    errors = []
    for _ in range(1000):
        eps = rng.uniform(-0.1, 0.1) / (2 * n)
        rx = _received(lay, [np.exp(2j * np.pi * rng.random())], [3], cfos=[eps])
        errors.append(estimate_channels(rx + _noise(rng, len(rx), s2), lay).cfo[0] - eps)
    assert np.var(errors) == pytest.approx(float(residual_cfo_variance(n, 3, 1.0 / s2)), rel=0.3)


def test_cfo_variance_with_three_periods_is_a_quarter_of_one_pair():
    """What the estimator does achieve: 3 periods give 1/4 of the 2-period variance (telescoping pairs), within 30%."""
    rng = np.random.default_rng(34)
    variances = []
    for repeats in (2, 3):
        lay = SoundingLayout(1, repeats=repeats)
        errors = []
        for _ in range(800):
            rx = _received(lay, [np.exp(2j * np.pi * rng.random())], [3], cfos=[0.0])
            errors.append(estimate_channels(rx + _noise(rng, len(rx), 0.1), lay).cfo[0])
        variances.append(np.var(errors))
    assert variances[1] / variances[0] == pytest.approx(0.25, rel=0.3)


# ------------------------------------------------------------------ fractional delays


@pytest.mark.parametrize("repeats", [1, 2])
@pytest.mark.parametrize("tau", [-0.5, -0.37, -0.1, 0.0, 0.013, 0.25, 0.49, 0.75])
def test_single_client_fractional_delay(repeats, tau):
    """A band-limited delay d + tau: delays + fractional = d + tau to 1e-4 samples, gain to 1e-4 (truth: 0.02, 1%)."""
    lay = SoundingLayout(1, repeats=repeats)
    h = 0.9 * np.exp(1.3j)
    est = estimate_channels(_received(lay, [h], [6], fractions=[tau]), lay)
    assert est.delays[0] + est.fractional[0] == pytest.approx(6 + tau, abs=1e-4)
    assert -0.5 <= est.fractional[0] <= 0.5
    assert est.gains[0] == pytest.approx(h, rel=1e-4)


@pytest.mark.parametrize("tau", [-0.45, -0.2, 0.1, 0.33])
def test_fractional_delay_of_the_whole_burst(tau):
    """The burst delayed by timing.fractional_delay (edges and all): total delay within 0.02, gain within 1%."""
    lay = SoundingLayout(1, repeats=2)
    h = 0.6 - 0.8j
    delayed = fractional_delay(h * lay.pilot(0), tau)  # burst at offset PAD (+ tau)
    d = 4
    window = delayed[PAD - d : PAD - d + lay.burst_length + lay.cp]  # burst starting at sample d (+ tau)
    est = estimate_channels(window, lay)
    assert est.delays[0] + est.fractional[0] == pytest.approx(d + tau, abs=0.02)
    assert est.gains[0] == pytest.approx(h, rel=0.01)


@pytest.mark.parametrize("repeats", [1, 2])
def test_several_clients_fractional_delays_with_separated_windows(repeats):
    """Clients with far-apart windows and |tau| >= 0.2: every total delay within 0.02 samples, every gain within 1%."""
    # min_shift 170, so the other clients' sinc tails are < 0.3% of a peak.
    rng = np.random.default_rng(50 + repeats)
    for _ in range(20):
        k = 3
        lay = SoundingLayout(k, cp=8, min_shift=170, repeats=repeats)
        gains = rng.uniform(0.7, 1.3, k) * np.exp(2j * np.pi * rng.random(k))
        delays = rng.integers(1, lay.cp, k)
        taus = rng.choice([-1.0, 1.0], k) * rng.uniform(0.2, 0.5, k)
        est = estimate_channels(_received(lay, gains, delays, fractions=taus), lay)
        np.testing.assert_allclose(est.delays + est.fractional, delays + taus, rtol=0, atol=0.02)
        np.testing.assert_allclose(est.gains, gains, rtol=0.01)


def test_fractional_delay_and_cfo_together():
    """repeats=2 with a fractional delay and a CFO: CFO to 1e-9/N, gain within 1%, delay within eps*N + 1e-3."""
    # eps*N is the time-frequency coupling of the root-1 pilot (see test_cfo_biases_the_fractional_delay...).
    lay = SoundingLayout(1, repeats=2)
    n = lay.length
    eps, tau, h = 0.05 / (2 * n), 0.31, 1.1 * np.exp(0.2j)
    est = estimate_channels(_received(lay, [h], [2], cfos=[eps], fractions=[tau]), lay)
    assert est.cfo[0] == pytest.approx(eps, abs=1e-9 / n)
    assert est.delays[0] + est.fractional[0] == pytest.approx(2 + tau, abs=eps * n + 1e-3)
    assert est.gains[0] == pytest.approx(h, rel=0.02)  # 1.1 % with the signed fractional estimator


def test_fractional_offset_is_exact_for_a_sinc():
    """fractional_offset(sinc(-1-f), sinc(-f), sinc(1-f)) = f for f in [-0.5, 0.5] (either sign of the peak)."""
    f = np.linspace(-0.5, 0.5, 41)
    for amplitude in (1.0, -2.0j):
        got = fractional_offset(amplitude * np.sinc(-1 - f), amplitude * np.sinc(-f), amplitude * np.sinc(1 - f))
        np.testing.assert_allclose(np.abs(got), np.abs(f), atol=1e-12)  # at f=+-0.5 either side is right
        inner = np.abs(f) < 0.5
        np.testing.assert_allclose(got[inner], f[inner], atol=1e-12)


def test_fractional_offset_is_robust_to_small_interference():
    """A perturbation of 1% of the peak on one neighbour moves the estimate by at most 0.02 samples."""
    f = -0.05
    left, peak, right = np.sinc(-1 - f), np.sinc(-f), np.sinc(1 - f)
    for dl, dr in [(0.0, 0.01), (0.0, -0.01), (0.01, 0.0), (-0.01, 0.0)]:
        got = fractional_offset(np.array([left + dl]), np.array([peak]), np.array([right + dr]))[0]
        assert got == pytest.approx(f, abs=0.02), (dl, dr)


def test_default_layout_fractional_delays_within_002():
    """Default 4-client layout, random delays in 1..cp-1 plus tau in [-0.5, 0.5]: total delay within 0.02 samples."""
    rng = np.random.default_rng(5)
    worst = 0.0
    for _ in range(40):
        k = 4
        lay = SoundingLayout(k)
        gains = _unit_gains(rng, k)
        delays = rng.integers(1, lay.cp, k)
        taus = rng.uniform(-0.5, 0.5, k)
        est = estimate_channels(_received(lay, gains, delays, fractions=taus), lay)
        worst = max(worst, float(np.max(np.abs(est.delays + est.fractional - delays - taus))))
    assert worst < 0.02


@pytest.mark.xfail(
    strict=True,
    reason="LIMITATION estimate.estimate_channels: with fractional delays, the other clients' sinc tails "
    "(~2% at the default 31-bin shift) add to each peak, so gains err by up to ~5% (no interference cancellation)",
)
def test_default_layout_fractional_gains_within_one_percent():
    """Default 4-client layout with fractional delays: every gain within 1%."""
    rng = np.random.default_rng(6)
    for _ in range(40):
        k = 4
        lay = SoundingLayout(k)
        gains = _unit_gains(rng, k)
        delays = rng.integers(1, lay.cp, k)
        taus = rng.uniform(-0.5, 0.5, k)
        est = estimate_channels(_received(lay, gains, delays, fractions=taus), lay)
        np.testing.assert_allclose(est.gains, gains, rtol=0.01)


# ------------------------------------------------------------------ taps


@pytest.mark.parametrize("repeats", [1, 2])
def test_taps_hold_each_clients_impulse_response(repeats):
    """Integer-lag multipath c_k[l] after delay d_k: est.taps[k, d_k + l + PRECURSOR] = c_k[l], every other bin 0."""
    rng = np.random.default_rng(60 + repeats)
    k = 4
    lay = SoundingLayout(k, repeats=repeats)
    delays = np.array([0, 3, 7, 10])
    channels = []
    for j in range(k):
        length = int(rng.integers(1, lay.cp - delays[j] + 1))
        c = rng.standard_normal(length) + 1j * rng.standard_normal(length)
        channels.append(c * np.exp(-0.3 * np.arange(length)))
    est = estimate_channels(_received(lay, np.ones(k), delays, channels=channels), lay)
    assert est.taps.shape == (k, lay.cp + 1 + PRECURSOR)
    for j in range(k):
        expected = np.zeros(lay.cp + 1 + PRECURSOR, dtype=complex)
        expected[delays[j] + PRECURSOR : delays[j] + PRECURSOR + len(channels[j])] = channels[j]
        np.testing.assert_allclose(est.taps[j], expected, atol=1e-12)
    assert est.noise_power < 1e-20


def test_taps_of_a_fractional_delay_are_a_sinc():
    """A lone client delayed by d + tau: its taps sample h * sinc(lag - d - tau) (periodic sinc, N = 127), to 1e-3."""
    lay = SoundingLayout(1)
    h, d, tau = 0.7j, 5, 0.3
    est = estimate_channels(_received(lay, [h], [d], fractions=[tau]), lay)
    lags = np.arange(est.taps.shape[1]) - PRECURSOR
    np.testing.assert_allclose(est.taps[0], h * np.sinc(lags - d - tau), atol=1e-3)
