"""Per-subcarrier truncated inversion (OFDM), the predicted error of a truncation threshold, and the
threshold that minimises it.

Exact properties of the pre-equalisers first (alignment, power budget in the time domain), then
predicted_error against closed forms and a Monte-Carlo of the aggregation it describes, then
optimal_threshold's choice in the regimes where the math says which way it must go.
"""

from __future__ import annotations

import numpy as np
import pytest

from airfl.modem.ofdm import OfdmLayout
from airfl.modem.power import (
    CommonScale,
    error_variance_per_value,
    optimal_threshold,
    predicted_error,
    truncated_inversion,
)


def _multipath(seed: int, k: int, layout: OfdmLayout = OfdmLayout()) -> np.ndarray:
    """(K, n_used) frequency-selective channels from random exponentially decaying FIR taps."""
    rng = np.random.default_rng(seed)
    width = 8
    taps = (rng.standard_normal((k, width)) + 1j * rng.standard_normal((k, width))) * np.exp(-0.4 * np.arange(width))
    return layout.channel_response(taps, 0)


@pytest.mark.parametrize("threshold_quantile", [0.0, 0.1, 0.3])
def test_2d_inversion_aligns_every_active_entry(threshold_quantile):
    """H_kf * b_kf = sqrt(eta) where active; b_kf = 0 elsewhere; active = |H_kf|^2 >= threshold."""
    h = _multipath(0, 5)
    g2 = np.abs(h) ** 2
    threshold = float(np.quantile(g2, threshold_quantile)) if threshold_quantile else 0.0
    pc = truncated_inversion(h, 0.2, threshold, n_fft=64)
    assert pc.precoders.shape == h.shape and pc.active.shape == h.shape
    np.testing.assert_array_equal(pc.active, g2 >= threshold)
    np.testing.assert_allclose(h[pc.active] * pc.precoders[pc.active], np.sqrt(pc.eta), rtol=1e-12)
    assert np.all(pc.precoders[~pc.active] == 0)
    np.testing.assert_array_equal(pc.participants, pc.active.any(axis=1))
    assert pc.n_active == int(pc.active.any(axis=1).sum())
    assert pc.threshold == threshold


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("threshold_quantile", [0.0, 0.25])
def test_2d_inversion_time_domain_power_budget(seed, threshold_quantile):
    """Every client's mean time-domain power sum_f |b_kf|^2 / n_fft <= P, with equality for the binding client."""
    p, n_fft = 0.3, 64
    h = _multipath(10 + seed, 6)
    g2 = np.abs(h) ** 2
    threshold = float(np.quantile(g2, threshold_quantile)) if threshold_quantile else 0.0
    pc = truncated_inversion(h, p, threshold, n_fft)
    power = np.sum(np.abs(pc.precoders) ** 2, axis=1) / n_fft
    assert np.all(power <= p * (1 + 1e-12))
    assert power.max() == pytest.approx(p, rel=1e-12)
    # the binding client is the one with the largest inverse-gain load over its active subcarriers
    load = np.sum(np.where(pc.active, 1.0 / g2, 0.0), axis=1)
    assert int(np.argmax(power)) == int(np.argmax(load))
    assert pc.eta == pytest.approx(p * n_fft / load.max(), rel=1e-12)


def test_2d_power_budget_holds_on_the_air():
    """The binding client's modulated OFDM body (unit-modulus symbols on every used carrier) has power exactly P."""
    o = OfdmLayout()
    p = 0.3
    h = _multipath(20, 3, o)
    pc = truncated_inversion(h, p, 0.0, o.n_fft)
    rng = np.random.default_rng(21)
    symbols = np.exp(2j * np.pi * rng.random((4, o.n_used)))
    powers = []
    for k in range(3):
        x = o.modulate(symbols * pc.precoders[k][None, :]).reshape(4, o.symbol_length)[:, o.cp :]
        powers.append(np.mean(np.abs(x) ** 2))
    assert max(powers) == pytest.approx(p, rel=1e-12)
    assert np.all(np.asarray(powers) <= p * (1 + 1e-12))


def test_one_subcarrier_is_single_carrier():
    """A (K, 1) channel with n_fft=1 gives the same eta, precoders and active set as the 1-D channel."""
    rng = np.random.default_rng(30)
    h = (rng.standard_normal(6) + 1j * rng.standard_normal(6)) / np.sqrt(2)
    one = truncated_inversion(h, 0.1, 0.3)
    two = truncated_inversion(h[:, None], 0.1, 0.3, n_fft=1)
    assert one.eta == pytest.approx(two.eta, rel=1e-15)
    np.testing.assert_allclose(one.precoders, two.precoders[:, 0], rtol=1e-15)
    np.testing.assert_array_equal(one.active, two.active[:, 0])
    np.testing.assert_array_equal(one.participants, two.participants)


def test_eta_grows_with_n_fft_at_fixed_channels():
    """Spreading a client's power over n_fft samples per symbol: eta scales with n_fft for the same channel grid."""
    h = _multipath(31, 4)
    eta_1 = truncated_inversion(h, 0.1, 0.0, 1).eta
    assert truncated_inversion(h, 0.1, 0.0, 64).eta == pytest.approx(64 * eta_1, rel=1e-12)


def test_silencing_a_deep_fade_raises_eta():
    """Truncating the weakest subcarriers lowers the binding load, so eta can only grow with the threshold."""
    h = _multipath(32, 4)
    g2 = np.abs(h) ** 2
    etas = [truncated_inversion(h, 0.1, float(t), 64).eta for t in [0.0, *np.quantile(g2, [0.05, 0.2, 0.5])]]
    assert np.all(np.diff(etas) >= 0) and etas[-1] > etas[0]


# ---------------------------------------------------------------- predicted_error


def test_predicted_error_full_inversion_is_the_theory():
    """Threshold 0, single carrier: noise part = error_variance_per_value (s^2 sigma^2 / (2 eta)), bias 0."""
    g2 = np.array([1.0, 0.3, 2.0])
    p, s2, scale = 0.5, 1e-2, 3.0
    noise, bias = predicted_error(g2, np.ones(3), p, s2, scale, spread=4.0, threshold=0.0)
    eta = p * 0.3
    assert noise == pytest.approx(error_variance_per_value(s2, eta, CommonScale(0.0, scale)), rel=1e-12)
    assert bias == 0.0


def test_predicted_error_two_client_closed_form():
    """K=2, w=(1/2, 1/2), |h|^2 = (1, eps): cutting client 1 gives noise s^2 sigma^2/(2 P (1/2)^2), bias spread/2."""
    eps, p, s2, scale, spread = 0.01, 1.0, 0.1, 2.0, 0.7
    g2 = np.array([1.0, eps])
    full = predicted_error(g2, np.array([0.5, 0.5]), p, s2, scale, spread, 0.0)
    assert full == pytest.approx((scale**2 * s2 / (2 * p * eps), 0.0), rel=1e-12)
    cut = predicted_error(g2, np.array([0.5, 0.5]), p, s2, scale, spread, 0.5)
    # in: w0/W - w0 = 1 - 1/2; out: w1^2 = 1/4
    assert cut == pytest.approx((scale**2 * s2 / (2 * p * 0.25), spread * (0.25 + 0.25)), rel=1e-12)


def test_predicted_error_normalises_the_weights():
    """Weights are used relative to their sum: (1, 3) and (0.25, 0.75) predict the same error."""
    g2 = np.array([[1.0, 0.2, 0.05], [0.5, 1.5, 0.9]])
    a = predicted_error(g2, np.array([1.0, 3.0]), 0.2, 0.01, 1.5, 0.3, 0.1, n_fft=8)
    b = predicted_error(g2, np.array([0.25, 0.75]), 0.2, 0.01, 1.5, 0.3, 0.1, n_fft=8)
    assert a == pytest.approx(b, rel=1e-12)


def test_predicted_error_nobody_active():
    """Everyone below the threshold: infinite noise (nothing received) and bias = spread."""
    assert predicted_error(np.array([0.1, 0.2]), np.ones(2), 1.0, 0.01, 1.0, 0.5, 1.0) == (float("inf"), 0.5)


def test_predicted_error_uncovered_subcarrier_costs_spread():
    """A subcarrier nobody transmits on contributes `spread` to the bias average (and no noise)."""
    g2 = np.array([[1.0, 0.001], [1.0, 0.002]])  # subcarrier 1 below the threshold for both clients
    noise, bias = predicted_error(g2, np.ones(2), 1.0, 0.01, 1.0, spread=0.8, threshold=0.01, n_fft=2)
    eta = 1.0 * 2 / 1.0  # each client carries only subcarrier 0, load 1
    assert noise == pytest.approx(0.5 * 0.01 / (2 * eta), rel=1e-12)  # mean over 2 subcarriers, one silent
    assert bias == pytest.approx(0.5 * 0.8, rel=1e-12)


def test_predicted_error_matches_a_monte_carlo_of_the_aggregation():
    """A Monte-Carlo of per-subcarrier aggregation with truncated_inversion's precoders matches predicted_error (5%)."""
    # Noise-only run against the noise part, bias-only run against the truncation-bias part, per real value.
    rng = np.random.default_rng(40)
    k, f, n_fft, p, scale = 3, 6, 16, 0.5, 1.7
    h = (rng.standard_normal((k, f)) + 1j * rng.standard_normal((k, f))) / np.sqrt(2)
    h[1, 2] *= 0.05  # deep fades: truncated below
    h[2, 4] *= 0.05
    g2 = np.abs(h) ** 2
    w = np.array([0.5, 0.3, 0.2])
    threshold = 0.02
    pc = truncated_inversion(h, p, threshold, n_fft)
    assert not pc.active.all() and pc.active.any(axis=0).all()
    w_f = (w[:, None] * pc.active).sum(axis=0)

    def simulate(noise_power, spread, trials=20_000):
        # normalised reals per client: common part m plus independent deviations of variance `spread`
        m = rng.standard_normal((trials, 1, f)) + 1j * rng.standard_normal((trials, 1, f))
        dev = np.sqrt(spread) * (rng.standard_normal((trials, k, f)) + 1j * rng.standard_normal((trials, k, f)))
        x = m + dev
        noise = np.sqrt(noise_power / 2) * (rng.standard_normal((trials, f)) + 1j * rng.standard_normal((trials, f)))
        y = np.sum(h[None] * pc.precoders[None] * w[None, :, None] * x, axis=1) + noise
        estimate = y / (np.sqrt(pc.eta) * w_f[None, :])
        truth = np.sum(w[None, :, None] * x, axis=1)
        err = (estimate - truth) * scale  # de-normalised
        return float(np.mean(np.r_[err.real.ravel(), err.imag.ravel()] ** 2))

    s2, spread = 0.05, 0.4
    noise_pred, _ = predicted_error(g2, w, p, s2, scale, spread, threshold, n_fft)
    _, bias_pred = predicted_error(g2, w, p, s2, 1.0, spread, threshold, n_fft)  # bias is in normalised units
    assert simulate(s2, 0.0) == pytest.approx(noise_pred, rel=0.05)
    assert simulate(0.0, spread) / scale**2 == pytest.approx(bias_pred, rel=0.05)


# ---------------------------------------------------------------- optimal_threshold


def test_optimal_threshold_without_noise_is_full_inversion():
    """No noise and any spread: leaving a client out only adds bias, so the optimum is 0 (full inversion)."""
    g2 = np.abs(_multipath(50, 4)) ** 2
    assert optimal_threshold(g2, np.ones(4), 0.1, 0.0, 1.0, spread=1.0, n_fft=64) == 0.0
    assert optimal_threshold(np.array([1.0, 1e-4, 0.3]), np.ones(3), 0.1, 0.0, 1.0, spread=1e-6) == 0.0


def test_optimal_threshold_without_spread_silences_a_deep_fade():
    """spread = 0, one client in a deep fade: noise alone favours silencing it (threshold above its gain)."""
    # Two equal-weight clients, |h|^2 = (1, 0.01): full inversion noise ~ 1/(2 P 0.01) = 50/P,
    # silencing client 1 ~ 1/(2 P (1/2)^2) = 2/P, so the threshold must sit above 0.01 and at most 1.
    t = optimal_threshold(np.array([1.0, 0.01]), np.array([0.5, 0.5]), 1.0, 0.1, 1.0, spread=0.0)
    assert 0.01 < t <= 1.0
    pc = truncated_inversion(np.array([1.0, 0.1j]), 1.0, t)
    np.testing.assert_array_equal(pc.active, [True, False])


def test_optimal_threshold_without_spread_keeps_a_mild_fade():
    """spread = 0 but |h|^2 = (1, 0.5): truncation halves W (noise x4) for only 2x eta, so full inversion (0) wins."""
    assert optimal_threshold(np.array([1.0, 0.5]), np.array([0.5, 0.5]), 1.0, 0.1, 1.0, spread=0.0) == 0.0


def test_optimal_threshold_equal_gains_is_full_inversion():
    """All gains equal: truncating raises no eta, only loses weight, so the optimum is 0."""
    assert optimal_threshold(np.full(5, 0.7), np.ones(5), 1.0, 1.0, 1.0, spread=0.0) == 0.0


@pytest.mark.parametrize("noise_power,spread,truncate", [(0.1, 1.0, True), (1e-3, 1.0, False)])
def test_optimal_threshold_noise_versus_spread(noise_power, spread, truncate):
    """High noise and small spread truncate the deep fade; low noise and large spread invert fully."""
    # |h|^2 = (1, 0.01), w = (1/2, 1/2), P = s = 1: truncation pays iff sigma^2 (50 - 2) > spread/2,
    # i.e. sigma^2 > spread/96.
    t = optimal_threshold(np.array([1.0, 0.01]), np.array([0.5, 0.5]), 1.0, noise_power, 1.0, spread)
    assert (t > 0.01) if truncate else (t == 0.0)


def test_optimal_threshold_ofdm_beats_full_inversion_when_noisy():
    """2-D gains, noisy and low spread: a positive threshold whose predicted total error beats full inversion."""
    g2 = np.abs(_multipath(51, 4)) ** 2
    args = (np.ones(4), 0.05, 0.5, 1.0)
    t = optimal_threshold(g2, *args, spread=0.01, n_fft=64)
    assert t > 0
    assert sum(predicted_error(g2, *args, 0.01, t, 64)) < sum(predicted_error(g2, *args, 0.01, 0.0, 64))


def test_optimal_threshold_of_dead_channels_is_zero():
    """No usable gain at all: threshold 0 (the caller finds nobody to invert)."""
    assert optimal_threshold(np.zeros((2, 3)), np.ones(2), 1.0, 0.1, 1.0, 0.5, n_fft=4) == 0.0
