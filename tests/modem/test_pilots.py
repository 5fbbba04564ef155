"""Payload pilots: the pattern's geometry exactly, then common-gain tracking noise-free (exact for a
constant gain, bounded for a slow phase ramp) and with noise (pilot SNR against truth).
"""

from __future__ import annotations

import numpy as np
import pytest

from airfl.modem.pilots import PILOT_SEQUENCE_LENGTH, PilotPattern, pilot_values, track_common_gain


def _qpsk(rng: np.random.Generator, n: int) -> np.ndarray:
    return (rng.choice([-1.0, 1.0], n) + 1j * rng.choice([-1.0, 1.0], n)) / np.sqrt(2)


def _received(pattern: PilotPattern, data: np.ndarray, data_gain: float, pilot_gain: float) -> np.ndarray:
    """What the receiver sees with no common error: data at data_gain, pilots at pilot_gain."""
    y = pattern.insert(data)
    y[pattern.data_positions] *= data_gain
    y[pattern.pilot_positions] *= pilot_gain
    return y


def test_pilot_values_are_unit_modulus_and_cycle():
    """Pilots have |p| = 1 and repeat with the Zadoff-Chu period."""
    p = pilot_values(3 * PILOT_SEQUENCE_LENGTH + 4)
    np.testing.assert_allclose(np.abs(p), 1.0, atol=1e-15)
    np.testing.assert_array_equal(p[PILOT_SEQUENCE_LENGTH : 2 * PILOT_SEQUENCE_LENGTH], p[:PILOT_SEQUENCE_LENGTH])


def test_pattern_positions_example():
    """n_data=10, spacing=4: pilots at 0, 5, 10 and the last sample 13; data fill the rest in order."""
    pat = PilotPattern(10, 4)
    assert (pat.n_pilots, pat.length) == (4, 14)
    np.testing.assert_array_equal(pat.pilot_positions, [0, 5, 10, 13])
    np.testing.assert_array_equal(pat.data_positions, [1, 2, 3, 4, 6, 7, 8, 9, 11, 12])


@pytest.mark.parametrize("n_data", [1, 2, 7, 31, 32, 33, 64, 1000])
@pytest.mark.parametrize("spacing", [1, 4, 32])
def test_pattern_geometry(n_data, spacing):
    """Pilots first and last, at most `spacing` data symbols between neighbours, data + pilots tile the payload."""
    pat = PilotPattern(n_data, spacing)
    p, d = pat.pilot_positions, pat.data_positions
    assert pat.length == n_data + pat.n_pilots
    assert p[0] == 0 and p[-1] == pat.length - 1
    assert np.all(np.diff(p) >= 2)  # strictly increasing, never two pilots in a row
    assert np.all(np.diff(p) - 1 <= spacing)
    assert len(d) == n_data
    np.testing.assert_array_equal(np.sort(np.concatenate([p, d])), np.arange(pat.length))


def test_spacing_zero_means_no_pilots():
    """spacing=0: no pilots, the payload is the data."""
    pat = PilotPattern(5, 0)
    assert pat.n_pilots == 0 and pat.length == 5 and len(pat.pilot_positions) == 0
    data = np.arange(5) + 1j
    np.testing.assert_array_equal(pat.insert(data), data)


def test_insert_places_data_and_pilots():
    """insert: data symbols at data_positions in order, pilot_values at pilot_positions."""
    pat = PilotPattern(9, 4)
    data = np.arange(9) * (1 + 2j)
    out = pat.insert(data)
    np.testing.assert_array_equal(out[pat.data_positions], data)
    np.testing.assert_array_equal(out[pat.pilot_positions], pilot_values(pat.n_pilots))
    with pytest.raises(ValueError, match="9 data symbols"):
        pat.insert(data[:8])


@pytest.mark.parametrize("n_data,spacing", [(0, 4), (5, -1)])
def test_pattern_validation(n_data, spacing):
    """No data or a negative spacing is refused."""
    with pytest.raises(ValueError):
        PilotPattern(n_data, spacing)


def test_constant_common_gain_is_removed_exactly():
    """A common complex gain g on the whole payload: the data come back to < 1e-12, gains == g, no residual CFO."""
    rng = np.random.default_rng(0)
    pat = PilotPattern(3000, 32)
    data = _qpsk(rng, 3000)
    g = 0.7 * np.exp(1.1j)
    out, track = track_common_gain(g * _received(pat, data, 0.3, 0.9), pat, data_gain=0.3, pilot_gain=0.9)
    assert np.max(np.abs(out - data)) < 1e-12
    np.testing.assert_allclose(track.gains, g, atol=1e-14)
    assert abs(track.residual_cfo) < 1e-15
    assert track.snr_db > 200  # noise-free: only rounding in the pilot residuals


def test_no_pilots_divides_by_the_data_gain_only():
    """Without pilots the data are only divided by the nominal gain; no gains, snr nan, residual 0."""
    pat = PilotPattern(6, 0)
    data = np.arange(6) - 2j
    out, track = track_common_gain(0.5 * data, pat, 0.5, 1.0)
    np.testing.assert_allclose(out, data, atol=1e-15)
    assert track.gains.size == 0 and np.isnan(track.snr_db) and track.residual_cfo == 0.0


@pytest.mark.parametrize("r", [1e-5, 1e-4])
def test_slow_phase_ramp_without_smoothing(r):
    """Unsmoothed pilots on a common ramp: residual_cfo = r exactly, data within the chord error theta^2/8."""
    # theta = phase advance between pilots; linear interpolation of the complex gain loses at most theta^2/8.
    rng = np.random.default_rng(1)
    spacing = 32
    pat = PilotPattern(3000, spacing)
    data = _qpsk(rng, 3000)
    ramp = np.exp(2j * np.pi * r * np.arange(pat.length))
    out, track = track_common_gain(ramp * _received(pat, data, 0.3, 0.9), pat, 0.3, 0.9, smoothing=1)
    theta = 2 * np.pi * r * (spacing + 1)
    assert track.residual_cfo == pytest.approx(r, rel=1e-9)
    assert np.max(np.abs(out / data - 1)) <= theta**2 / 8 * 1.01


@pytest.mark.parametrize("r", [1e-5, 1e-4])
def test_slow_phase_ramp_with_default_smoothing(r):
    """Default smoothing on a slow common ramp: data within 2.5*theta of truth, residual_cfo within 2% of r."""
    # The moving average pads the ends with the first/last pilot, so the smoothed phase there is off by
    # 1.75*theta (start) and 2.25*theta (end, with the even window's half-pilot lag).
    rng = np.random.default_rng(2)
    spacing = 32
    pat = PilotPattern(3000, spacing)
    data = _qpsk(rng, 3000)
    ramp = np.exp(2j * np.pi * r * np.arange(pat.length))
    out, track = track_common_gain(ramp * _received(pat, data, 0.3, 0.9), pat, 0.3, 0.9)
    theta = 2 * np.pi * r * (spacing + 1)
    assert np.max(np.abs(out / data - 1)) < 2.5 * theta
    assert track.residual_cfo == pytest.approx(r, rel=0.02)


def test_default_smoothing_has_no_phase_lag_on_a_ramp():
    """Mid-payload, after tracking a slow common ramp, the data carry no systematic phase error (< theta/10)."""
    rng = np.random.default_rng(3)
    spacing, r = 32, 1e-4
    pat = PilotPattern(3000, spacing)
    data = _qpsk(rng, 3000)
    ramp = np.exp(2j * np.pi * r * np.arange(pat.length))
    out, _ = track_common_gain(ramp * _received(pat, data, 0.3, 0.9), pat, 0.3, 0.9)
    theta = 2 * np.pi * r * (spacing + 1)
    mid = slice(1000, 2000)
    assert abs(np.mean(np.angle(out[mid] / data[mid]))) < theta / 10  # measured theta/2


def test_odd_smoothing_has_no_phase_lag_on_a_ramp():
    """With an odd (centred) smoothing width, mid-payload data of a slow ramp are unbiased in phase."""
    rng = np.random.default_rng(3)
    spacing, r = 32, 1e-4
    pat = PilotPattern(3000, spacing)
    data = _qpsk(rng, 3000)
    ramp = np.exp(2j * np.pi * r * np.arange(pat.length))
    out, _ = track_common_gain(ramp * _received(pat, data, 0.3, 0.9), pat, 0.3, 0.9, smoothing=15)
    theta = 2 * np.pi * r * (spacing + 1)
    assert abs(np.mean(np.angle(out[1000:2000] / data[1000:2000]))) < theta / 100


def test_pilot_snr_and_data_error_with_noise():
    """With noise CN(0, s2): pilot SNR ~ |pilot_gain|^2/s2 (within 1 dB); data error variance ~ s2/data_gain^2 (10%)."""
    rng = np.random.default_rng(4)
    pat = PilotPattern(20_000, 32)
    data = _qpsk(rng, 20_000)
    dg, pg, s2 = 0.3, 0.9, 0.01
    y = 0.8 * np.exp(-0.4j) * _received(pat, data, dg, pg)
    y += np.sqrt(s2 / 2) * (rng.standard_normal(pat.length) + 1j * rng.standard_normal(pat.length))
    out, track = track_common_gain(y, pat, dg, pg)
    true_snr_db = 10 * np.log10(0.8**2 * pg**2 / s2)
    assert track.snr_db == pytest.approx(true_snr_db, abs=1.0)
    # the corrected data's noise is s2 / (0.8 * dg)^2 (the common gain divides it too)
    assert np.var(out - data) == pytest.approx(s2 / (0.8 * dg) ** 2, rel=0.1)
    assert np.mean(np.abs(track.gains - 0.8 * np.exp(-0.4j))) < 0.05
