"""Preamble detection: normalised correlation metric, false-alarm-controlled threshold, timing."""

from __future__ import annotations

import numpy as np
import pytest

from airfl.modem.sequences import zadoff_chu
from airfl.modem.sync import correlation_metric, detect_preamble, detection_threshold

PREAMBLE = zadoff_chu(127, 7)


def _noise(rng: np.random.Generator, n: int, power: float = 1.0) -> np.ndarray:
    return np.sqrt(power / 2) * (rng.standard_normal(n) + 1j * rng.standard_normal(n))


def _qpsk(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.exp(1j * np.pi / 4 * (2 * rng.integers(0, 4, n) + 1))


@pytest.mark.parametrize("length,pfa", [(127, 1e-6), (63, 1e-2), (2, 0.5), (1000, 1e-9)])
def test_threshold_formula(length, pfa):
    """gamma = 1 - P_fa^(1/(L-1)), i.e. (1 - gamma)^(L-1) = P_fa: the Beta(1, L-1) tail on noise."""
    gamma = detection_threshold(length, pfa)
    assert gamma == pytest.approx(1 - pfa ** (1 / (length - 1)), rel=1e-12)
    assert (1 - gamma) ** (length - 1) == pytest.approx(pfa, rel=1e-9)
    assert 0 < gamma < 1


def test_threshold_decreases_with_length_and_pfa():
    """Longer preambles and looser false-alarm targets both lower the threshold."""
    assert detection_threshold(255, 1e-6) < detection_threshold(127, 1e-6)
    assert detection_threshold(127, 1e-3) < detection_threshold(127, 1e-6)


@pytest.mark.parametrize("length,pfa", [(127, 0.0), (127, 1.0), (127, -0.1), (1, 0.1), (0, 0.1)])
def test_threshold_rejects_bad_arguments(length, pfa):
    """P_fa must be in (0, 1) and the preamble at least 2 samples long."""
    with pytest.raises(ValueError):
        detection_threshold(length, pfa)


def test_correlation_matches_direct_sum():
    """c(t) = sum_n r[t+n] conj(p[n]) and m(t) = |c|^2/(|p|^2 |r_t|^2) for every lag where p fits."""
    rng = np.random.default_rng(0)
    p = zadoff_chu(31, 3)
    r = _noise(rng, 100)
    metric, corr = correlation_metric(r, p)
    assert corr.shape == metric.shape == (100 - 31 + 1,)
    direct = np.array([np.sum(r[t : t + 31] * np.conj(p)) for t in range(70)])
    np.testing.assert_allclose(corr, direct, rtol=1e-10, atol=1e-10)
    energy = np.array([np.sum(np.abs(r[t : t + 31]) ** 2) for t in range(70)])
    np.testing.assert_allclose(metric, np.abs(direct) ** 2 / (31 * energy), rtol=1e-9)


def test_metric_is_scale_invariant_and_bounded():
    """m(t) does not depend on the received power and stays in [0, 1] (so one threshold fits every gain)."""
    rng = np.random.default_rng(1)
    r = _noise(rng, 400)
    r[100:227] += PREAMBLE
    m1, _ = correlation_metric(r, PREAMBLE)
    m2, _ = correlation_metric((3e-4 - 2e-4j) * r, PREAMBLE)
    np.testing.assert_allclose(m1, m2, rtol=1e-9, atol=1e-12)
    assert np.all((m1 >= 0) & (m1 <= 1))


def test_metric_on_zero_window_is_zero():
    """An all-zero stretch (no energy) gives metric 0, not NaN."""
    r = np.zeros(300, dtype=complex)
    r[200:] = 1.0
    metric, _ = correlation_metric(r, PREAMBLE)
    assert np.all(np.isfinite(metric))
    assert np.all(metric[:73] == 0)


def test_window_shorter_than_preamble_raises():
    """A window that cannot hold the preamble is an error, not an empty result."""
    with pytest.raises(ValueError, match="shorter"):
        correlation_metric(np.zeros(10, dtype=complex), PREAMBLE)


@pytest.mark.parametrize("length,pfa", [(63, 1e-2), (127, 1e-2), (63, 1e-1)])
def test_false_alarm_rate_on_noise(length, pfa):
    """On complex white Gaussian noise the fraction of lags above threshold is the configured P_fa (10%)."""
    rng = np.random.default_rng(length)
    p = zadoff_chu(length, 1)
    gamma = detection_threshold(length, pfa)
    metric, _ = correlation_metric(_noise(rng, 300_000, 2.5), p)
    assert np.mean(metric > gamma) == pytest.approx(pfa, rel=0.1)
    assert np.mean(metric) == pytest.approx(1 / length, rel=0.05)  # Beta(1, L-1) mean


@pytest.mark.parametrize("start", [0, 1, 57, 300 - 127])
def test_noise_free_exact_index(start):
    """Noise-free, embedded in random data: found at the exact sample, metric 1, gain = the complex amplitude."""
    rng = np.random.default_rng(start)
    r = 0.8 * _qpsk(rng, 300)
    amp = 0.05 * np.exp(1j * 2.0)
    r[start : start + 127] = amp * PREAMBLE
    det = detect_preamble(r, PREAMBLE)
    assert det.detected
    assert det.index == start
    assert det.metric == pytest.approx(1.0, abs=1e-9)
    assert det.gain == pytest.approx(amp, rel=1e-9)
    assert det.threshold == pytest.approx(detection_threshold(127, 1e-6))


def test_noise_free_surrounded_by_silence():
    """Zeros around the preamble (the guard of a loopback window) do not confuse the timing."""
    r = np.zeros(400, dtype=complex)
    r[150:277] = 2.0 * PREAMBLE
    det = detect_preamble(r, PREAMBLE)
    assert det.detected and det.index == 150
    assert det.gain == pytest.approx(2.0, rel=1e-9)


def test_exact_index_at_moderate_snr():
    """At -3 dB per-sample SNR (21 dB after the 127-sample correlation) the index is exact in every trial."""
    rng = np.random.default_rng(5)
    gains = []
    for trial in range(50):
        start = int(rng.integers(0, 200))
        r = _noise(rng, 400, 2.0)
        r[start : start + 127] += PREAMBLE
        det = detect_preamble(r, PREAMBLE)
        assert det.detected
        assert det.index == start
        gains.append(det.gain)
    # the gain estimate is unbiased with variance noise/L = 2/127
    assert np.mean(gains) == pytest.approx(1.0, abs=0.06)
    assert np.var(gains) == pytest.approx(2.0 / 127, rel=0.4)


def test_pure_noise_is_not_detected():
    """With the default P_fa = 1e-6 a window of noise alone is (in this seeded draw) not a detection."""
    rng = np.random.default_rng(6)
    misses = [detect_preamble(_noise(rng, 300), PREAMBLE) for _ in range(20)]
    assert not any(d.detected for d in misses)
    assert all(d.metric < d.threshold for d in misses)
