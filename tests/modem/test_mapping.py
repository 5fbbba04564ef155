"""Reals <-> complex symbols: the linear map that lets the channel's sum be the sum of the updates."""

from __future__ import annotations

import numpy as np
import pytest

from airfl.modem.mapping import reals_to_symbols, symbol_count, symbols_to_reals


@pytest.mark.parametrize("n,expected", [(0, 0), (1, 1), (2, 1), (3, 2), (20000, 10000), (20001, 10001)])
def test_symbol_count(n, expected):
    """Two reals per channel use, rounded up."""
    assert symbol_count(n) == expected


def test_layout_is_in_phase_then_quadrature():
    """Entry 2i is the real part and 2i+1 the imaginary part; an odd tail is padded with 0."""
    np.testing.assert_array_equal(reals_to_symbols(np.array([1.0, 2.0, 3.0])), np.array([1 + 2j, 3 + 0j]))
    np.testing.assert_array_equal(symbols_to_reals(np.array([1 + 2j, 3 - 4j]), 3), np.array([1.0, 2.0, 3.0]))


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 1001, 20000])
def test_round_trip_is_exact(n):
    """symbols_to_reals(reals_to_symbols(x)) returns x bit for bit, for odd and even lengths."""
    x = np.random.default_rng(n).standard_normal(n) * 1e3
    s = reals_to_symbols(x)
    assert s.shape == (symbol_count(n),)
    y = symbols_to_reals(s, n)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, x)


def test_map_is_linear():
    """map(a*x + b*y) = a*map(x) + b*map(y): superposition on the air is superposition of the reals."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(11), rng.standard_normal(11)
    np.testing.assert_allclose(
        reals_to_symbols(0.3 * x - 2.0 * y), 0.3 * reals_to_symbols(x) - 2.0 * reals_to_symbols(y), rtol=1e-14, atol=1e-14
    )


def test_symbol_power_is_twice_mean_square():
    """Mean |s|^2 = 2 * mean(x^2) for even lengths; power control relies on this factor 2."""
    x = np.random.default_rng(2).standard_normal(1000)
    assert np.mean(np.abs(reals_to_symbols(x)) ** 2) == pytest.approx(2 * np.mean(x**2), rel=1e-12)


def test_multidimensional_input_is_flattened():
    """A parameter tensor maps like its row-major flattening."""
    x = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(reals_to_symbols(x), reals_to_symbols(x.ravel()))


@pytest.mark.parametrize("n_symbols,n_values", [(2, 5), (3, 3), (0, 1)])
def test_wrong_symbol_count_raises(n_symbols, n_values):
    """Decoding refuses a symbol vector whose length does not match the number of values."""
    with pytest.raises(ValueError, match="symbols"):
        symbols_to_reals(np.zeros(n_symbols, dtype=complex), n_values)
