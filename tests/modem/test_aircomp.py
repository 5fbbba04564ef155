"""Analog over-the-air computation: client bursts in, a superposition through channels, the sum out.

The superpositions here are built by hand (h_k times each client's burst, added), so the receive
chain is tested without the loopback air: exact noise-free first, then AWGN against theory.
"""

from __future__ import annotations

import numpy as np
import pytest

from airfl.modem.aircomp import FrameNotDetectedError, client_burst, client_symbols, receive_sum
from airfl.modem.frame import AggregationLayout
from airfl.modem.mapping import reals_to_symbols, symbol_count
from airfl.modem.power import common_scale, error_variance_per_value, normalise, truncated_inversion, update_statistics


def _scenario(seed: int, k: int, d: int, weights=None):
    rng = np.random.default_rng(seed)
    updates = [rng.normal(rng.normal(0, 1), rng.uniform(0.5, 3.0), d) for _ in range(k)]
    w = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, dtype=float)
    h = (rng.standard_normal(k) + 1j * rng.standard_normal(k)) / np.sqrt(2)
    return updates, w, h


def _superpose(updates, w, h, tx_power=0.1, threshold=0.0, guard=32, start=None, noise=None):
    """Window = sum over participants of h_k * client_burst_k, preamble starting at `start` (default: guard)."""
    d = updates[0].size
    pc = truncated_inversion(h, tx_power, threshold)
    active = np.flatnonzero(pc.active)
    scale = common_scale([update_statistics(updates[k]) for k in active], w[active])
    layout = AggregationLayout(symbol_count(d))
    window = np.zeros(layout.burst_length + 2 * guard, dtype=np.complex128)
    start = guard if start is None else start
    for k in active:
        burst = client_burst(client_symbols(updates[k], w[k], scale), pc.precoders[k], layout)
        window[start : start + layout.burst_length] += h[k] * burst
    if noise is not None:
        window += noise(window.size)
    return window, layout, pc, scale, active


def test_client_symbols_is_normalise_then_map():
    """A client's symbols are its common-scale-normalised update, two reals per symbol."""
    updates, w, _ = _scenario(0, 2, 9)
    scale = common_scale([update_statistics(g) for g in updates], w)
    np.testing.assert_array_equal(client_symbols(updates[1], w[1], scale), reals_to_symbols(normalise(updates[1], w[1], scale)))


def test_client_burst_layout():
    """Burst = b_k * [preamble | symbols]; a symbol count that does not fit the layout is refused."""
    layout = AggregationLayout(4)
    sym = np.array([1, 1j, -1, 0.5])
    burst = client_burst(sym, 0.5 - 0.5j, layout)
    np.testing.assert_array_equal(burst, (0.5 - 0.5j) * np.concatenate([layout.preamble, sym]))
    with pytest.raises(ValueError, match="symbols"):
        client_burst(sym[:3], 1.0, layout)


@pytest.mark.parametrize("k,d", [(1, 10), (3, 1001), (8, 4000)])
def test_noise_free_sum_is_exact(k, d):
    """No noise, pre-equalised channels: the decoded vector is sum_k w_k g_k to relative error < 1e-9."""
    updates, w, h = _scenario(k, k, d)
    window, layout, pc, scale, _ = _superpose(updates, w, h)
    estimate, report = receive_sum(window, layout, pc.eta, scale, d, 1.0, pc.n_active)
    exact = np.sum([w[j] * updates[j] for j in range(k)], axis=0)
    assert estimate.shape == (d,)
    assert np.linalg.norm(estimate - exact) / np.linalg.norm(exact) < 1e-9
    assert report.detection.detected and report.detection.index == 32
    assert report.alignment == pytest.approx(1.0, abs=1e-9)


def test_noise_free_sum_with_truncated_clients_and_raw_weights():
    """Silent (deep-fade) clients drop out; with un-normalised weights the output is sum_active w_k g_k."""
    updates, _, _ = _scenario(11, 5, 301)
    w = np.array([10.0, 20.0, 30.0, 5.0, 7.0])
    h = np.array([1.0, 0.05j, -0.8 + 0.3j, 0.6j, 0.01])
    window, layout, pc, scale, active = _superpose(updates, w, h, threshold=0.1)
    np.testing.assert_array_equal(active, [0, 2, 3])
    estimate, report = receive_sum(window, layout, pc.eta, scale, 301, w[active].sum(), len(active))
    exact = np.sum([w[j] * updates[j] for j in active], axis=0)
    assert np.linalg.norm(estimate - exact) / np.linalg.norm(exact) < 1e-9
    assert report.alignment == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("start", [0, 5, 64])
def test_timing_anywhere_in_the_guard(start):
    """The frame may start anywhere from the window's first sample to 2*guard: still exact."""
    updates, w, h = _scenario(20 + start, 3, 200)
    window, layout, pc, scale, _ = _superpose(updates, w, h, guard=32, start=start)
    estimate, report = receive_sum(window, layout, pc.eta, scale, 200, 1.0, 3)
    exact = np.sum([w[j] * updates[j] for j in range(3)], axis=0)
    assert report.detection.index == start
    assert np.linalg.norm(estimate - exact) / np.linalg.norm(exact) < 1e-9


def test_alignment_reports_residual_gain_and_phase():
    """A common gain/phase error on the superposition shows up in report.alignment (|.| in dB, angle)."""
    updates, w, h = _scenario(30, 4, 100)
    window, layout, pc, scale, _ = _superpose(updates, w, h)
    error = 10 ** (-0.5 / 20) * np.exp(1j * 0.3)
    _, report = receive_sum(error * window, layout, pc.eta, scale, 100, 1.0, 4)
    assert 20 * np.log10(abs(report.alignment)) == pytest.approx(-0.5, abs=1e-9)
    assert np.angle(report.alignment) == pytest.approx(0.3, abs=1e-9)


def test_awgn_error_variance_matches_theory():
    """With noise CN(0, s2) added to the superposition, each real entry of the de-normalised estimate
    carries error variance s2 / (2 eta) * scale^2 (error_variance_per_value), zero-mean (5%)."""
    rng = np.random.default_rng(40)
    updates, w, h = _scenario(40, 3, 40_000)
    s2 = 1e-3

    def noise(n):
        return np.sqrt(s2 / 2) * (rng.standard_normal(n) + 1j * rng.standard_normal(n))

    window, layout, pc, scale, _ = _superpose(updates, w, h, noise=noise)
    estimate, report = receive_sum(window, layout, pc.eta, scale, 40_000, 1.0, 3)
    err = estimate - np.sum([w[j] * updates[j] for j in range(3)], axis=0)
    theory = error_variance_per_value(s2, pc.eta, scale)
    assert np.var(err) == pytest.approx(theory, rel=0.05)
    assert abs(np.mean(err)) < 5 * np.sqrt(theory / err.size)
    assert report.detection.index == 32


def test_pure_noise_window_raises_frame_not_detected():
    """A window holding only noise is not decoded into garbage: FrameNotDetectedError with the metric."""
    rng = np.random.default_rng(50)
    layout = AggregationLayout(symbol_count(500))
    window = 0.1 * (rng.standard_normal(layout.burst_length + 64) + 1j * rng.standard_normal(layout.burst_length + 64))
    with pytest.raises(FrameNotDetectedError, match="no preamble"):
        receive_sum(window, layout, 0.05, common_scale([update_statistics(np.ones(2))], np.ones(1)), 500, 1.0, 2)


def test_receive_sum_argument_checks():
    """eta <= 0 (nobody transmitted) and a layout that does not match n_values are ValueErrors."""
    updates, w, h = _scenario(60, 2, 50)
    window, layout, pc, scale, _ = _superpose(updates, w, h)
    with pytest.raises(ValueError, match="eta"):
        receive_sum(window, layout, 0.0, scale, 50, 1.0, 2)
    with pytest.raises(ValueError, match="symbols"):
        receive_sum(window, layout, pc.eta, scale, 52, 1.0, 2)
