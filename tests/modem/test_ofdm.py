"""OFDM numerology: exact modulate/demodulate round trips, then a multipath FIR channel (np.convolve)
against channel_response, and per-symbol common phase recovery from the pilots.
"""

from __future__ import annotations

import numpy as np
import pytest

from airfl.modem.ofdm import OfdmLayout, common_phase_errors
from airfl.modem.pilots import pilot_values

LAYOUTS = [OfdmLayout(), OfdmLayout(backoff=0), OfdmLayout(128, 32, 100, 10, 4), OfdmLayout(16, 4, 10, 3, 1)]


def _qpsk(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return (rng.choice([-1.0, 1.0], shape) + 1j * rng.choice([-1.0, 1.0], shape)) / np.sqrt(2)


def _through_fir(x: np.ndarray, taps: np.ndarray, precursor: int) -> np.ndarray:
    """Linear convolution with taps[j] at lag j - precursor (precursors arrive early), same length as x."""
    return np.convolve(x, taps)[precursor : precursor + len(x)]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_fft=48), dict(n_fft=4), dict(n_used=63), dict(n_used=64), dict(n_used=0),
        dict(backoff=17), dict(pilot_every=1),
    ],
)
def test_layout_validation(kwargs):
    """Non-power-of-two FFT, odd/oversized used count, backoff beyond the prefix, pilot_every < 2: refused."""
    with pytest.raises(ValueError):
        OfdmLayout(**kwargs)


@pytest.mark.parametrize("o", LAYOUTS)
def test_used_subcarriers_and_slots(o):
    """Used bins: n_used/2 either side of an empty DC bin; pilot and data slots partition the used carriers."""
    half = o.n_used // 2
    assert len(o.used) == o.n_used and 0 not in o.used
    np.testing.assert_array_equal(np.sort(np.fft.fftfreq(o.n_fft, 1 / o.n_fft)[o.used]), np.r_[-half:0, 1 : half + 1])
    np.testing.assert_array_equal(np.sort(np.r_[o.pilot_slots, o.data_slots]), np.arange(o.n_used))
    assert o.n_data == o.n_used - len(o.pilot_slots)
    assert np.all(np.diff(o.pilot_slots) == o.pilot_every)
    assert o.symbol_length == o.cp + o.n_fft
    assert o.n_symbols(1) == 1 and o.n_symbols(o.n_data) == 1 and o.n_symbols(o.n_data + 1) == 2


def test_default_numerology():
    """The default layout is 802.11a-like: 64-point FFT, 16-sample prefix, 52 used, 4 pilots, 48 data."""
    o = OfdmLayout()
    assert (o.n_fft, o.cp, o.n_used, len(o.pilot_slots), o.n_data) == (64, 16, 52, 4, 48)


@pytest.mark.parametrize("o", LAYOUTS)
def test_preamble_values(o):
    """The preamble puts a unit-modulus value on every used subcarrier."""
    assert o.preamble_values.shape == (o.n_used,)
    np.testing.assert_allclose(np.abs(o.preamble_values), 1.0, atol=1e-14)


@pytest.mark.parametrize("o", LAYOUTS)
def test_modulate_layout_and_power(o):
    """Each symbol is [last cp samples of the body | body]; body power = sum |X_f|^2 / n_fft (Parseval)."""
    rng = np.random.default_rng(0)
    grid = _qpsk(rng, 3, o.n_used)
    x = o.modulate(grid).reshape(3, o.symbol_length)
    np.testing.assert_allclose(x[:, : o.cp], x[:, -o.cp :], atol=1e-15)
    body = x[:, o.cp :]
    np.testing.assert_allclose(np.mean(np.abs(body) ** 2, axis=1), o.n_used / o.n_fft, rtol=1e-12)


@pytest.mark.parametrize("o", LAYOUTS)
def test_round_trip(o):
    """demodulate(modulate(X)) = X * exp(-j 2 pi f backoff / n_fft) (the early window), exactly X when backoff = 0."""
    rng = np.random.default_rng(1)
    grid = _qpsk(rng, 5, o.n_used)
    back = o.demodulate(o.modulate(grid), 5)
    h_identity = o.channel_response(np.array([[1.0]]), 0)[0]
    np.testing.assert_allclose(h_identity, np.exp(-2j * np.pi * o.used * o.backoff / o.n_fft), atol=1e-14)
    np.testing.assert_allclose(back, grid * h_identity[None, :], atol=1e-12)
    if o.backoff == 0:
        np.testing.assert_allclose(back, grid, atol=1e-12)


def test_demodulate_needs_whole_symbols():
    """Fewer samples than n_symbols whole symbols: ValueError; extra samples are ignored."""
    o = OfdmLayout()
    x = o.modulate(np.ones((2, o.n_used)))
    with pytest.raises(ValueError, match="samples"):
        o.demodulate(x[:-1], 2)
    np.testing.assert_allclose(o.demodulate(np.r_[x, np.ones(7)], 2), o.demodulate(x, 2), atol=0)


def test_channel_response_formula():
    """H_f = sum_j taps[j] exp(-j 2 pi f (j - precursor + backoff) / n_fft), per client row."""
    o = OfdmLayout()
    rng = np.random.default_rng(2)
    taps = rng.standard_normal((3, 6)) + 1j * rng.standard_normal((3, 6))
    h = o.channel_response(taps, 2)
    lags = np.arange(6) - 2 + o.backoff
    expected = np.array([[np.sum(t * np.exp(-2j * np.pi * f * lags / o.n_fft)) for f in o.used] for t in taps])
    assert h.shape == (3, o.n_used)
    np.testing.assert_allclose(h, expected, atol=1e-12)
    # a 1-D tap vector is one client
    np.testing.assert_allclose(o.channel_response(taps[0], 2), expected[:1], atol=1e-12)


@pytest.mark.parametrize("o", LAYOUTS)
@pytest.mark.parametrize("precursor", [0, 1])
def test_multipath_fir_gives_h_times_x(o, precursor):
    """An OFDM signal through an FIR within the prefix (np.convolve) demodulates to H*X, H = channel_response(taps)."""
    # Lags span -precursor..cp-backoff: the prefix absorbs the channel, no inter-symbol interference.
    precursor = min(precursor, o.backoff)
    rng = np.random.default_rng(3)
    last = min(o.cp - o.backoff, o.cp - 1)  # ISI-free up to cp - backoff; channel_response stops at cp - 1 (see xfail)
    width = last + precursor + 1
    taps = (rng.standard_normal(width) + 1j * rng.standard_normal(width)) * np.exp(-0.2 * np.arange(width))
    grid = _qpsk(rng, 6, o.n_used)
    received = _through_fir(o.modulate(grid), taps, precursor)
    h = o.channel_response(taps, precursor)[0]
    np.testing.assert_allclose(o.demodulate(received, 6), grid * h[None, :], atol=1e-12)


def test_channel_response_refuses_precursors_before_the_window():
    """A precursor earlier than the FFT window's backoff cannot be represented: ValueError."""
    o = OfdmLayout(backoff=1)
    with pytest.raises(ValueError, match="cyclic prefix"):
        o.channel_response(np.ones(4), 2)  # lag -2 < -backoff


def test_channel_response_refuses_a_channel_longer_than_the_prefix():
    """Taps reaching past the cyclic prefix are refused."""
    o = OfdmLayout()
    with pytest.raises(ValueError, match="cyclic prefix"):
        o.channel_response(np.ones(o.cp + 1), 0)


@pytest.mark.parametrize("backoff", [0, 2])
def test_channel_response_accepts_exactly_the_isi_free_lags(backoff):
    """Every lag in -backoff..cp-backoff is accepted and demodulates to H*X; the next lag is refused."""
    o = OfdmLayout(backoff=backoff)
    rng = np.random.default_rng(4)
    grid = _qpsk(rng, 4, o.n_used)
    x = o.modulate(grid)
    for lag in range(-backoff, o.cp - backoff + 1):
        taps = np.zeros(o.cp + 1, dtype=complex)  # index j = lag j - backoff (precursor = backoff)
        taps[backoff] = 1.0
        taps[lag + backoff] += 0.5j
        width = max(lag, 0) + backoff + 1
        h = o.channel_response(taps[:width], backoff)[0]
        np.testing.assert_allclose(o.demodulate(_through_fir(x, taps[:width], backoff), 4), grid * h, atol=1e-9)
    with pytest.raises(ValueError, match="cyclic prefix"):
        o.channel_response(np.r_[1.0, np.zeros(o.cp - o.backoff), 0.5], 0)  # lag cp - backoff + 1


def test_data_grid_places_symbols_and_pilots():
    """data_grid: symbols fill the data slots row by row, zero-padded; every row carries the pilots."""
    o = OfdmLayout()
    symbols = np.arange(1, 61) * (1 + 1j)
    grid = o.data_grid(symbols)
    assert grid.shape == (2, o.n_used)
    np.testing.assert_array_equal(grid[:, o.data_slots].ravel()[:60], symbols)
    assert not np.any(grid[:, o.data_slots].ravel()[60:])
    np.testing.assert_array_equal(grid[:, o.pilot_slots], np.tile(pilot_values(4), (2, 1)))


def test_common_phase_errors_recovers_a_per_symbol_gain():
    """Received = expected * c_s per symbol: unsmoothed, the per-symbol c_s comes back exactly."""
    o = OfdmLayout()
    rng = np.random.default_rng(5)
    n = 8
    expected = o.data_grid(_qpsk(rng, n * o.n_data))
    c = rng.uniform(0.5, 2.0, n) * np.exp(2j * np.pi * rng.random(n))
    np.testing.assert_allclose(common_phase_errors(expected * c[:, None], expected, o, smoothing=1), c, atol=1e-12)


def test_common_phase_errors_constant_and_ramp():
    """Default smoothing (3, centred): a constant gain exactly; a phase ramp exactly in phase on inner symbols."""
    o = OfdmLayout()
    rng = np.random.default_rng(6)
    n = 10
    expected = o.data_grid(_qpsk(rng, n * o.n_data))
    g = 0.9 * np.exp(0.3j)
    np.testing.assert_allclose(common_phase_errors(g * expected, expected, o), g, atol=1e-12)
    step = 0.05
    c = np.exp(1j * step * np.arange(n))
    cpe = common_phase_errors(expected * c[:, None], expected, o)
    np.testing.assert_allclose(np.angle(cpe[1:-1]), step * np.arange(1, n - 1), atol=1e-12)
    np.testing.assert_allclose(np.abs(cpe[1:-1]), (1 + 2 * np.cos(step)) / 3, rtol=1e-12)


def test_common_phase_errors_ignores_data_slots():
    """Only pilot slots enter: garbage on the data subcarriers does not change the estimate."""
    o = OfdmLayout()
    rng = np.random.default_rng(7)
    expected = np.zeros((3, o.n_used), dtype=complex)
    expected[:, o.pilot_slots] = pilot_values(4)
    received = 2j * expected
    received[:, o.data_slots] = rng.standard_normal((3, o.n_data))
    np.testing.assert_allclose(common_phase_errors(received, expected, o), 2j, atol=1e-12)
