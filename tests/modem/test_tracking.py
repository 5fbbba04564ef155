"""CFO tracking across rounds: the variance formula's shape, then the Kalman filter against truth.

Monte-Carlo runs use many clients of one tracker as independent trials (the filter is per client).
The estimator-vs-formula comparison (measured sounding CFO variance) lives in test_estimate_repeats.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from airfl.modem.tracking import CfoTracker, residual_cfo_variance


def test_residual_cfo_variance_formula_value():
    """1 / ((2 pi N)^2 * N * (repeats - 1) * snr), elementwise over an snr array."""
    v = residual_cfo_variance(127, 2, np.array([10.0, 1.0]))
    expected = 1.0 / ((2 * np.pi * 127) ** 2 * 127 * np.array([10.0, 1.0]))
    np.testing.assert_allclose(v, expected, rtol=1e-12)
    assert v.shape == (2,)


def test_residual_cfo_variance_scaling():
    """Halves when the SNR doubles; falls as (R-1)^2 with the periods R (the consecutive-period phase
    differences telescope) and as N^3 with the pilot length."""
    base = float(residual_cfo_variance(127, 2, 10.0))
    assert float(residual_cfo_variance(127, 2, 20.0)) == pytest.approx(base / 2, rel=1e-12)
    assert float(residual_cfo_variance(127, 3, 10.0)) == pytest.approx(base / 4, rel=1e-12)
    assert float(residual_cfo_variance(254, 2, 10.0)) == pytest.approx(base / 8, rel=1e-12)
    # one period has no pair: treated as one pair (the caller should not rely on it), never a division by 0
    assert float(residual_cfo_variance(127, 1, 10.0)) == pytest.approx(base, rel=1e-12)


def test_residual_cfo_variance_is_finite_at_zero_snr():
    """snr <= 0 (a silent client) gives a huge but finite variance: the filter then ignores the measurement."""
    v = residual_cfo_variance(127, 2, np.array([0.0, -1.0]))
    assert np.all(np.isfinite(v)) and np.all(v > 1e3)


def test_first_measurement_initialises_an_unacquired_client():
    """A client never set nor measured takes its first measurement as the offset, with that variance."""
    tr = CfoTracker(3)
    tr.predict([1], 0.0)
    out = tr.update([1], np.array([2.5e-3]), np.array([1e-8]))
    assert out[0] == 2.5e-3
    assert tr.p[1, 0, 0] == 1e-8
    assert np.isinf(tr.p[0, 0, 0]) and np.isinf(tr.p[2, 0, 0])  # the others are untouched


def test_set_then_predict_without_drift_keeps_the_offset():
    """After set(), predicting later returns the set offset (drift starts at 0); only the named clients move."""
    tr = CfoTracker(4, drift_prior=1e-6)
    tr.set([0, 2], np.array([1e-3, -2e-4]), np.array([1e-10, 1e-10]), time_s=5.0)
    np.testing.assert_array_equal(tr.predict([0, 2], 9.0), [1e-3, -2e-4])
    assert tr.time[0] == 9.0 and tr.time[2] == 9.0 and np.isnan(tr.time[1])
    # uncertainty grows with the drift prior: p00 = v + dt^2 * (1e-6)^2 + q dt^4/4
    assert tr.p[0, 0, 0] == pytest.approx(1e-10 + 16 * 1e-12 + 1e-18 * 256 / 4, rel=1e-9)


def test_converges_to_a_constant_offset_with_variance_falling_as_one_over_n():
    """Constant offsets measured with variance r once a second: error variance ~ r/n (and matches the filter's P)."""
    rng = np.random.default_rng(3)
    m, r = 400, (1e-4) ** 2
    truth = rng.uniform(-1e-3, 1e-3, m)
    tr = CfoTracker(m, drift_prior=1e-6)
    clients = list(range(m))
    measured = {}
    for n in range(1, 21):
        tr.predict(clients, float(n))
        est = tr.update(clients, truth + np.sqrt(r) * rng.standard_normal(m), np.full(m, r))
        if n in (1, 5, 20):
            measured[n] = (float(np.var(est - truth)), float(tr.p[:, 0, 0].mean()), abs(float(np.mean(est - truth))))
    for n, (var, p00, bias) in measured.items():
        # 400 trials: the variance estimate has ~7% relative std; 25% is > 3 sigma
        assert var == pytest.approx(r / n, rel=0.25), n
        assert p00 == pytest.approx(r / n, rel=0.25), n
        assert bias < 4 * np.sqrt(var / m)
    assert measured[5][0] / measured[20][0] == pytest.approx(4.0, rel=0.3)


def test_follows_a_linear_drift_noise_free():
    """Noise-free measurements of f0 + a*t: the filter locks onto the drift rate and predicts ahead exactly."""
    m = 5
    rng = np.random.default_rng(4)
    f0 = rng.uniform(-1e-3, 1e-3, m)
    a = rng.uniform(-3e-7, 3e-7, m)  # cycles/sample per second, within the drift prior (1e-6)
    tr = CfoTracker(m, drift_prior=1e-6)
    clients = list(range(m))
    for t in np.arange(0.0, 20.0, 0.5):
        tr.predict(clients, t)
        est = tr.update(clients, f0 + a * t, np.full(m, 1e-20))
    np.testing.assert_allclose(est, f0 + a * t, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tr.x[:, 1], a, rtol=1e-4, atol=1e-12)
    np.testing.assert_allclose(tr.predict(clients, 30.0), f0 + a * 30.0, rtol=0, atol=1e-10)


def test_follows_a_linear_drift_with_noise():
    """Noisy measurements of a drifting offset: the tracked error beats one measurement's and the rate is found."""
    rng = np.random.default_rng(5)
    m, r, a = 200, (1e-5) ** 2, 2e-7
    f0 = rng.uniform(-1e-3, 1e-3, m)
    tr = CfoTracker(m, drift_prior=1e-6)
    clients = list(range(m))
    for n in range(60):
        tr.predict(clients, float(n))
        truth = f0 + a * n
        est = tr.update(clients, truth + np.sqrt(r) * rng.standard_normal(m), np.full(m, r))
    err = est - truth
    assert np.sqrt(np.mean(err**2)) < 0.5 * np.sqrt(r)  # 60 measurements, two states: well below one measurement
    assert np.mean(tr.x[:, 1]) == pytest.approx(a, rel=0.1)
    # the drift (1.2e-5 over the run) is not left behind as a lag: the error is centred
    assert abs(np.mean(err)) < 4 * np.std(err) / np.sqrt(m)


def test_measurements_with_larger_variance_count_less():
    """The update is a variance-weighted blend: a measurement as uncertain as the state moves it halfway."""
    tr = CfoTracker(2)
    tr.set([0, 1], np.array([0.0, 0.0]), np.array([1e-8, 1e-8]), time_s=0.0)
    tr.p[:, 1, 1] = 0.0  # no drift uncertainty: a pure offset blend
    out = tr.update([0, 1], np.array([1e-3, 1e-3]), np.array([1e-8, 1e-6]))
    assert out[0] == pytest.approx(0.5e-3, rel=1e-9)
    assert out[1] == pytest.approx(1e-3 * 1e-8 / (1e-8 + 1e-6), rel=1e-9)
