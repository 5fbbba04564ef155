"""The receiver additions of analog aggregation: payload pilots (single carrier), peak clipping, and the
OFDM chain through frequency-selective multipath.

Superpositions are built by hand: every participant's burst through its own channel (a gain for single
carrier, an FIR with np.convolve for OFDM), added. Exact noise-free aggregation first, then common
impairments (gain, residual CFO) and AWGN against theory (power.error_variance_per_value,
power.predicted_error).
"""

from __future__ import annotations

import numpy as np
import pytest

from airfl.modem.aircomp import (
    FrameNotDetectedError,
    client_burst,
    client_burst_ofdm,
    client_symbols,
    expected_ofdm_preamble,
    peak_clip_level,
    receive_sum,
    receive_sum_ofdm,
)
from airfl.modem.frame import AggregationLayout, OfdmAggregationLayout
from airfl.modem.mapping import symbol_count, symbols_to_reals
from airfl.modem.ofdm import OfdmLayout
from airfl.modem.power import (
    common_scale,
    error_variance_per_value,
    normalise,
    predicted_error,
    truncated_inversion,
    update_statistics,
)

GUARD = 40


def _updates(seed: int, k: int, d: int) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    updates = [rng.normal(rng.normal(0, 1), rng.uniform(0.5, 3.0), d) for _ in range(k)]
    w = rng.uniform(0.2, 1.0, k)
    return updates, w / w.sum()


def _noise(rng: np.random.Generator, n: int, power: float) -> np.ndarray:
    return np.sqrt(power / 2) * (rng.standard_normal(n) + 1j * rng.standard_normal(n))


# ------------------------------------------------------------------ single carrier: clipping and pilots


def test_client_symbols_clip_limits_the_normalised_reals():
    """clip=c: the reals are normalise(...) clipped to [-c, c] before mapping; clip=None leaves them alone."""
    updates, w = _updates(0, 2, 1001)
    scale = common_scale([update_statistics(g) for g in updates], w)
    reals = normalise(updates[0], w[0], scale)
    c = 0.5 * np.max(np.abs(reals))
    clipped = symbols_to_reals(client_symbols(updates[0], w[0], scale, clip=c), 1001)
    np.testing.assert_array_equal(clipped, np.clip(reals, -c, c))
    assert np.any(np.abs(reals) > c)
    np.testing.assert_array_equal(symbols_to_reals(client_symbols(updates[0], w[0], scale), 1001), reals)


def test_peak_clip_level_formula():
    """peak_clip_level(P, A) = A / sqrt(2 P): both parts at that level, times |b| = sqrt(P), give |.| = A."""
    assert peak_clip_level(0.5, 0.8) == pytest.approx(0.8 / np.sqrt(1.0), rel=1e-15)
    level = peak_clip_level(0.3, 0.9)
    assert abs(np.sqrt(0.3) * (level + 1j * level)) == pytest.approx(0.9, rel=1e-12)


@pytest.mark.parametrize("tx_power,dac_peak", [(0.1, 1.0), (0.5, 0.8), (0.64, 0.8)])
def test_clipped_bursts_never_exceed_the_dac_peak(tx_power, dac_peak):
    """With clip = peak_clip_level(P, A) and |b|^2 <= P, no sample of any burst exceeds A (pilots on, sqrt(P) <= A)."""
    # Heavy-tailed (Student t) updates, truncated-inversion precoders.
    rng = np.random.default_rng(1)
    k, d = 4, 2001
    updates = [rng.standard_t(2, d) * rng.uniform(0.5, 2) for _ in range(k)]
    w = np.full(k, 1 / k)
    h = (rng.standard_normal(k) + 1j * rng.standard_normal(k)) / np.sqrt(2)
    pc = truncated_inversion(h, tx_power, 0.0)
    scale = common_scale([update_statistics(g) for g in updates], w)
    layout = AggregationLayout(symbol_count(d), pilot_spacing=32)
    clip = peak_clip_level(tx_power, dac_peak)
    clients = list(zip(updates, w, pc.precoders))
    peaks = [np.max(np.abs(client_burst(client_symbols(g, wk, scale, clip), b, layout))) for g, wk, b in clients]
    assert max(peaks) <= dac_peak * (1 + 1e-12)
    unclipped = [np.max(np.abs(client_burst(client_symbols(g, wk, scale), b, layout))) for g, wk, b in clients]
    assert max(unclipped) > dac_peak  # the heavy tails would have overdriven the DAC


def test_client_burst_with_pilots_layout():
    """Burst = b * [preamble | data with pilots every `pilot_spacing` symbols]."""
    layout = AggregationLayout(70, pilot_spacing=16)
    sym = np.exp(2j * np.pi * np.arange(70) / 7)
    burst = client_burst(sym, 0.3 - 0.1j, layout)
    assert len(burst) == layout.burst_length == 127 + 70 + layout.pattern.n_pilots
    np.testing.assert_array_equal(burst, (0.3 - 0.1j) * np.concatenate([layout.preamble, layout.pattern.insert(sym)]))


def _superpose_sc(updates, w, h, layout_kwargs, tx_power=0.1):
    d = updates[0].size
    pc = truncated_inversion(h, tx_power, 0.0)
    scale = common_scale([update_statistics(g) for g in updates], w)
    layout = AggregationLayout(symbol_count(d), **layout_kwargs)
    window = np.zeros(layout.burst_length + 2 * GUARD, dtype=np.complex128)
    for k in range(len(updates)):
        burst = client_burst(client_symbols(updates[k], w[k], scale), pc.precoders[k], layout)
        window[GUARD : GUARD + layout.burst_length] += h[k] * burst
    return window, layout, pc, scale


def _channels(seed: int, k: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(k) + 1j * rng.standard_normal(k)) / np.sqrt(2)


@pytest.mark.parametrize("k,d,spacing", [(1, 10, 4), (3, 1001, 16), (8, 4000, 32)])
def test_noise_free_sum_with_pilots_is_exact(k, d, spacing):
    """Pilots on, no noise: sum_k w_k g_k to 1e-9 relative; alignment 1, common gain 1, no residual CFO."""
    updates, w = _updates(10 + k, k, d)
    window, layout, pc, scale = _superpose_sc(updates, w, _channels(k, k), dict(pilot_spacing=spacing))
    estimate, report = receive_sum(window, layout, pc.eta, scale, d, 1.0, pc.n_active)
    exact = np.sum([w[j] * updates[j] for j in range(k)], axis=0)
    assert np.linalg.norm(estimate - exact) / np.linalg.norm(exact) < 1e-9
    assert report.detection.index == GUARD
    assert report.alignment == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(report.common_gain, 1.0, atol=1e-9)
    assert abs(report.residual_cfo) < 1e-12


def test_pilots_remove_a_common_complex_gain():
    """The whole superposition times g: still exact; alignment and the tracked common gain both read g."""
    updates, w = _updates(20, 4, 3000)
    window, layout, pc, scale = _superpose_sc(updates, w, _channels(20, 4), dict(pilot_spacing=32))
    g = 0.6 * np.exp(-2.2j)
    estimate, report = receive_sum(g * window, layout, pc.eta, scale, 3000, 1.0, 4)
    exact = np.sum([w[j] * updates[j] for j in range(4)], axis=0)
    assert np.linalg.norm(estimate - exact) / np.linalg.norm(exact) < 1e-9
    assert report.alignment == pytest.approx(g, abs=1e-9)
    np.testing.assert_allclose(report.common_gain, g, atol=1e-9)


def test_pilots_track_a_common_residual_cfo():
    """A common residual CFO r is reported within 5%; pilots cut the error tenfold against the same frame without."""
    updates, w = _updates(21, 3, 4000)
    h = _channels(21, 3)
    r = 2e-5
    exact = np.sum([w[j] * updates[j] for j in range(3)], axis=0)
    errors = {}
    for spacing in (0, 16):
        window, layout, pc, scale = _superpose_sc(updates, w, h, dict(pilot_spacing=spacing))
        ramp = np.exp(2j * np.pi * r * np.arange(len(window)))
        estimate, report = receive_sum(ramp * window, layout, pc.eta, scale, 4000, 1.0, 3)
        errors[spacing] = np.linalg.norm(estimate - exact) / np.linalg.norm(exact)
        if spacing:
            assert report.residual_cfo == pytest.approx(r, rel=0.05)
        else:
            assert report.residual_cfo == 0.0 and np.isnan(report.pilot_snr_db)
    assert errors[16] < errors[0] / 10


def test_awgn_with_pilots_matches_theory():
    """Pilots on, AWGN: error variance = error_variance_per_value (10%), pilot SNR = eta n_active^2 / s2 (1 dB)."""
    rng = np.random.default_rng(22)
    updates, w = _updates(22, 3, 40_000)
    window, layout, pc, scale = _superpose_sc(updates, w, _channels(22, 3), dict(pilot_spacing=32))
    s2 = 1e-3
    estimate, report = receive_sum(window + _noise(rng, len(window), s2), layout, pc.eta, scale, 40_000, 1.0, 3)
    err = estimate - np.sum([w[j] * updates[j] for j in range(3)], axis=0)
    assert np.var(err) == pytest.approx(error_variance_per_value(s2, pc.eta, scale), rel=0.1)
    assert report.pilot_snr_db == pytest.approx(10 * np.log10(pc.eta * 9 / s2), abs=1.0)


# ------------------------------------------------------------------ OFDM


def _fir_taps(seed: int, k: int, o: OfdmLayout, precursor: int) -> np.ndarray:
    """(K, width) FIR taps with lags -precursor..cp-backoff, a different random length and profile per client."""
    rng = np.random.default_rng(seed)
    width = o.cp - o.backoff + precursor + 1
    taps = np.zeros((k, width), dtype=np.complex128)
    for j in range(k):
        first = int(rng.integers(0, precursor + 1))
        last = int(rng.integers(first + 1, width + 1))
        n = last - first
        taps[j, first:last] = (rng.standard_normal(n) + 1j * rng.standard_normal(n)) * np.exp(-0.3 * np.arange(n)) / 2
    return taps


def _superpose_ofdm(updates, w, taps, precursor, o, tx_power=0.1, threshold=0.0, silence=None):
    """Window with every participant's OFDM burst through its FIR (np.convolve), the frame at GUARD.

    silence: data-subcarrier positions (in `used`) where every client is forced silent (nobody covers them).
    Returns window, layout, power control, scale, participant weights, carrier weights and counts.
    """
    d = updates[0].size
    h = o.channel_response(taps, precursor)
    pc = truncated_inversion(h, tx_power, threshold, o.n_fft)
    active, precoders = pc.active.copy(), pc.precoders.copy()
    if silence is not None:
        active[:, silence] = False
        precoders[:, silence] = 0
    part = active.any(axis=1)
    wa = np.where(part, w, 0.0)
    wa = wa / wa.sum()
    scale = common_scale([update_statistics(updates[k]) for k in np.flatnonzero(part)], wa[part])
    layout = OfdmAggregationLayout(symbol_count(d), o)
    window = np.zeros(layout.burst_length + 2 * GUARD, dtype=np.complex128)
    for k in np.flatnonzero(part):
        burst = client_burst_ofdm(client_symbols(updates[k], wa[k], scale), precoders[k], layout)
        received = np.convolve(burst, taps[k])  # taps[j] at lag j - precursor: starts `precursor` early
        start = GUARD - precursor
        window[start : start + len(received)] += received[: len(window) - start]
    carrier_w = (wa[:, None] * active).sum(axis=0)
    carrier_n = active.sum(axis=0)
    return window, layout, pc, scale, wa, active, carrier_w, carrier_n


def _contributor_mean(updates, wa, active, o, d, offset):
    """Per value: sum_k w_k g_k / W over the clients active on its data subcarrier (offset where nobody is)."""
    carrier = np.repeat(np.resize(np.arange(o.n_data), symbol_count(d)), 2)[:d]
    on = active[:, o.data_slots][:, carrier]  # (K, d)
    total = (wa[:, None] * on).sum(axis=0)
    num = np.sum([wa[k] * on[k] * updates[k] for k in range(len(updates))], axis=0)
    return np.where(total > 0, num / np.where(total > 0, total, 1.0), offset), int(np.sum(total == 0))


def test_client_burst_ofdm_layout():
    """Burst = modulate([preamble; data grid] * b) with b per used subcarrier; wrong shapes are refused."""
    o = OfdmLayout()
    layout = OfdmAggregationLayout(100, o)
    rng = np.random.default_rng(30)
    sym = np.exp(2j * np.pi * rng.random(100))
    b = rng.standard_normal(o.n_used) + 1j * rng.standard_normal(o.n_used)
    burst = client_burst_ofdm(sym, b, layout)
    assert len(burst) == layout.burst_length == 4 * o.symbol_length
    grid = np.vstack([o.preamble_values[None, :], o.data_grid(sym)]) * b[None, :]
    np.testing.assert_allclose(burst, o.modulate(grid), atol=1e-14)
    with pytest.raises(ValueError, match="symbols"):
        client_burst_ofdm(sym[:99], b, layout)
    with pytest.raises(ValueError, match="pre-equalisers"):
        client_burst_ofdm(sym, b[:-1], layout)


def test_expected_preamble_is_the_sum_advanced_by_the_backoff():
    """Reference = modulate(sqrt(eta) n_f P_f), body rotated `backoff` samples early (as inverted channels deliver)."""
    o = OfdmLayout()
    layout = OfdmAggregationLayout(10, o)
    counts = np.random.default_rng(31).integers(0, 4, o.n_used)
    ref = expected_ofdm_preamble(layout, 0.2, counts)
    plain = o.modulate(np.sqrt(0.2) * counts * o.preamble_values)
    np.testing.assert_allclose(ref[o.cp :], np.roll(plain[o.cp :], -o.backoff), atol=1e-12)
    np.testing.assert_allclose(ref[: o.cp], ref[-o.cp :], atol=1e-15)  # still a cyclic prefix


@pytest.mark.parametrize("k,d", [(1, 90), (3, 1001), (6, 5000)])
def test_ofdm_noise_free_sum_through_multipath_is_exact(k, d):
    """Per-client multipath in the prefix, full inversion from known taps: the weighted sum to 1e-9, nothing lost."""
    o = OfdmLayout()
    updates, w = _updates(40 + k, k, d)
    taps = _fir_taps(40 + k, k, o, precursor=2)
    window, layout, pc, scale, wa, _, cw, cn = _superpose_ofdm(updates, w, taps, 2, o)
    assert pc.active.all()
    estimate, report = receive_sum_ofdm(window, layout, pc.eta, scale, d, cw, cn)
    exact = np.sum([wa[j] * updates[j] for j in range(k)], axis=0)
    assert estimate.shape == (d,)
    assert np.max(np.abs(estimate - exact)) < 1e-9 * np.max(np.abs(exact))
    assert report.detection.detected and report.detection.index == GUARD
    assert report.lost_values == 0
    np.testing.assert_allclose(report.common_gain, 1.0, atol=1e-9)
    assert abs(report.residual_cfo) < 1e-12


@pytest.mark.parametrize("quantile", [0.1, 0.3])
def test_ofdm_per_subcarrier_truncation_gives_the_contributor_weighted_mean(quantile):
    """Per-subcarrier truncation: every value is sum_k w_k g_k / W_f over the clients that carried it (1e-9)."""
    o = OfdmLayout()
    k, d = 5, 3000
    updates, w = _updates(50, k, d)
    taps = _fir_taps(50, k, o, precursor=2)
    g2 = np.abs(o.channel_response(taps, 2)) ** 2
    threshold = float(np.quantile(g2, quantile))
    window, layout, pc, scale, wa, active, cw, cn = _superpose_ofdm(updates, w, taps, 2, o, threshold=threshold)
    assert not active.all() and cn[o.pilot_slots].min() > 0
    estimate, report = receive_sum_ofdm(window, layout, pc.eta, scale, d, cw, cn)
    truth, uncovered = _contributor_mean(updates, wa, active, o, d, scale.offset)
    np.testing.assert_allclose(estimate, truth, rtol=0, atol=1e-9 * np.max(np.abs(truth)))
    assert report.lost_values == uncovered


def test_ofdm_uncovered_subcarrier_returns_the_offset_and_is_counted():
    """A data subcarrier nobody transmits on: its values come back as the common offset; lost_values counts them."""
    o = OfdmLayout()
    k, d = 3, 2 * 3 * o.n_data  # three full OFDM symbols
    updates, w = _updates(60, k, d)
    taps = _fir_taps(60, k, o, precursor=1)
    silent = o.data_slots[[0, 17]]
    window, layout, pc, scale, wa, active, cw, cn = _superpose_ofdm(updates, w, taps, 1, o, silence=silent)
    estimate, report = receive_sum_ofdm(window, layout, pc.eta, scale, d, cw, cn)
    truth, uncovered = _contributor_mean(updates, wa, active, o, d, scale.offset)
    assert uncovered == 2 * 3 * 2  # 2 subcarriers x 3 symbols x 2 reals
    assert report.lost_values == uncovered
    np.testing.assert_allclose(estimate, truth, rtol=0, atol=1e-9 * np.max(np.abs(truth)))


def test_ofdm_common_gain_is_removed_by_the_pilots():
    """The whole OFDM superposition times g: values still exact, common_gain reads g on every symbol."""
    o = OfdmLayout()
    k, d = 3, 2000
    updates, w = _updates(70, k, d)
    taps = _fir_taps(70, k, o, precursor=2)
    window, layout, pc, scale, wa, _, cw, cn = _superpose_ofdm(updates, w, taps, 2, o)
    g = 1.7 * np.exp(0.9j)
    estimate, report = receive_sum_ofdm(g * window, layout, pc.eta, scale, d, cw, cn)
    exact = np.sum([wa[j] * updates[j] for j in range(k)], axis=0)
    assert np.max(np.abs(estimate - exact)) < 1e-9 * np.max(np.abs(exact))
    np.testing.assert_allclose(report.common_gain, g, atol=1e-9)


def test_ofdm_reports_a_common_residual_cfo():
    """A slow common CFO r on the OFDM superposition: residual_cfo within 5% of r, values within 1% (per-symbol CPE)."""
    o = OfdmLayout()
    k, d = 3, 8000
    updates, w = _updates(71, k, d)
    taps = _fir_taps(71, k, o, precursor=2)
    window, layout, pc, scale, wa, _, cw, cn = _superpose_ofdm(updates, w, taps, 2, o)
    r = 2e-5
    ramp = np.exp(2j * np.pi * r * np.arange(len(window)))
    estimate, report = receive_sum_ofdm(window * ramp, layout, pc.eta, scale, d, cw, cn)
    exact = np.sum([wa[j] * updates[j] for j in range(k)], axis=0)
    assert report.residual_cfo == pytest.approx(r, rel=0.05)
    assert np.linalg.norm(estimate - exact) / np.linalg.norm(exact) < 0.01


def test_ofdm_awgn_matches_predicted_error():
    """OFDM, truncation, AWGN: error variance about the contributor-weighted mean = predicted noise part (10%)."""
    rng = np.random.default_rng(80)
    o = OfdmLayout()
    k, d = 4, 20_000
    updates, w = _updates(80, k, d)
    taps = _fir_taps(80, k, o, precursor=2)
    g2 = np.abs(o.channel_response(taps, 2)) ** 2
    threshold = float(np.quantile(g2, 0.15))
    window, layout, pc, scale, wa, active, cw, cn = _superpose_ofdm(updates, w, taps, 2, o, threshold=threshold)
    s2 = 1e-3
    estimate, _ = receive_sum_ofdm(window + _noise(rng, len(window), s2), layout, pc.eta, scale, d, cw, cn)
    truth, uncovered = _contributor_mean(updates, wa, active, o, d, scale.offset)
    assert uncovered == 0
    noise_part, _ = predicted_error(g2, wa, 0.1, s2, scale.scale, 0.0, threshold, o.n_fft)
    assert np.var(estimate - truth) == pytest.approx(noise_part, rel=0.1)


def test_ofdm_alignment_is_one_for_exact_pre_equalisers():
    """Flat channels inverted exactly: the report's alignment is 1 (as in the single-carrier chain)."""
    o = OfdmLayout()
    k, d = 3, 500
    updates, w = _updates(90, k, d)
    taps = np.zeros((k, 3), dtype=complex)
    taps[:, 2] = _channels(90, k)  # one tap at lag 0 (precursor 2)
    window, layout, pc, scale, wa, _, cw, cn = _superpose_ofdm(updates, w, taps, 2, o)
    _, report = receive_sum_ofdm(window, layout, pc.eta, scale, d, cw, cn)
    assert report.alignment == pytest.approx(1.0, abs=1e-9)


def test_receive_sum_ofdm_argument_checks():
    """eta <= 0 and a layout that does not match n_values are ValueErrors; a noise window raises FrameNotDetected."""
    o = OfdmLayout()
    layout = OfdmAggregationLayout(symbol_count(100), o)
    ones = np.ones(o.n_used)
    rng = np.random.default_rng(91)
    window = _noise(rng, layout.burst_length + 2 * GUARD, 1.0)
    scale = common_scale([update_statistics(np.arange(4.0))], np.ones(1))
    with pytest.raises(ValueError, match="eta"):
        receive_sum_ofdm(window, layout, 0.0, scale, 100, ones, ones)
    with pytest.raises(ValueError, match="symbols"):
        receive_sum_ofdm(window, layout, 0.1, scale, 102, ones, ones)
    with pytest.raises(FrameNotDetectedError):
        receive_sum_ofdm(window, layout, 0.1, scale, 100, ones, ones)
