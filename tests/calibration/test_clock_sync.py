"""The estimators behind `frequency` and `timing`, on synthetic signals with exact answers."""

from __future__ import annotations

import numpy as np
import pytest

from airfl.calibration import clock_sync as cs
from airfl.dsp.resample import interpolate_uniform

N, EXT = 353, 32


@pytest.mark.parametrize("index", range(6))
def test_marker_roots_have_small_inverses_and_differ(index):
    roots = [cs.marker_root(i, N) for i in range(6)]
    assert len(set(roots)) == 6
    inverse = pow(roots[index], -1, N)
    assert min(inverse, N - inverse) == cs.marker_inverse(index)


@pytest.mark.parametrize("delay", [-0.45, -0.1, 0.0, 0.25, 0.5, 0.93, 3.3])
def test_phase_slope_delay_is_exact_for_band_limited_fractional_delays(delay):
    """A Zadoff-Chu block delayed by any fraction through the loopback's interpolator: the delay
    comes back within 1e-3 samples without noise, and the gain is the one applied."""
    block, seq = cs.marker(N, cs.marker_root(1, N), EXT)
    x = np.concatenate([np.zeros(50), block, np.zeros(50)])
    y = 0.3j * interpolate_uniform(x, -delay, len(x))
    start = 50 + EXT + int(np.floor(delay))
    est, gain = cs.phase_slope_delay(y[start : start + N], seq)
    assert start + est == pytest.approx(50 + EXT + delay, abs=1e-3)
    assert gain == pytest.approx(0.3j, abs=2e-3)


def test_fit_marker_removes_the_cfo_before_timing():
    """1 kHz of CFO at 1 MS/s is 0.35 bins: left in, it would move the peak; removed, the position
    is exact to 1e-3 samples."""
    block, seq = cs.marker(N, cs.marker_root(2, N), EXT)
    x = np.concatenate([np.zeros(200), block, np.zeros(200)])
    cfo = 1e-3
    y = interpolate_uniform(x, -0.37, len(x)) * np.exp(2j * np.pi * cfo * np.arange(len(x)))
    starts, _ = cs.detect_markers(y, seq, strongest_only=True)
    fit = cs.fit_marker(y, int(starts[0]), seq, EXT, cfo)
    assert fit is not None and fit.position == pytest.approx(200 + EXT + 0.37, abs=1e-3)
    biased = cs.fit_marker(y, int(starts[0]), seq, EXT, 0.0)
    assert abs(biased.position - (200 + EXT + 0.37)) > 0.1


def test_tone_frequency_with_noise_and_a_phase_jump():
    """A tone 3 kHz off its nominal 160 kHz, 20 dB SNR, with a 2 rad phase jump in the middle (a
    fading-block boundary): the block median is within 2 Hz; a plain FFT peak search too coarse."""
    rng = np.random.default_rng(0)
    n = np.arange(4096)
    f = 0.163
    x = np.exp(2j * np.pi * f * n) * np.where(n < 2000, 1.0, np.exp(2j))
    x = x + 0.1 / np.sqrt(2) * (rng.standard_normal(len(n)) + 1j * rng.standard_normal(len(n)))
    est, err, snr = cs.tone_frequency(x, 0.16, 0.01)
    assert abs(est - f) * 1e6 < 2.0 and err * 1e6 < 2.0
    assert snr == pytest.approx(20.0, abs=1.5)


def test_trend_inliers_reject_outliers_around_a_drifting_line():
    t = np.arange(40.0)
    v = 0.5 * t + np.random.default_rng(1).normal(0, 0.01, 40)
    v[[5, 30]] += [3.0, -2.0]
    ok = cs.trend_inliers(t, v, 1e-6)
    assert not ok[5] and not ok[30] and ok.sum() == 38
    assert cs.robust_inliers(v, 1e-6).sum() == 40  # the trend alone hides them from a plain median


def test_detect_markers_finds_every_repetition():
    block, seq = cs.marker(127, 1, 16)
    period = 1000
    buf = np.zeros(period, dtype=complex)
    buf[100 : 100 + len(block)] = block
    y = np.tile(buf, 5)
    starts, metric = cs.detect_markers(y, seq, min_distance=3 * period // 4)
    np.testing.assert_array_equal(starts, 116 + period * np.arange(5))
    assert np.all(metric > 0.99)
