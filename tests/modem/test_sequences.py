"""Zadoff-Chu sequences and the prime helpers that size the pilots."""

from __future__ import annotations

import cmath
import math

import numpy as np
import pytest

from airfl.modem.sequences import is_prime, next_prime, zadoff_chu

# (length, root) pairs: prime lengths (what the frames use) and odd composite lengths with a coprime root.
CASES = [(7, 1), (7, 3), (63, 2), (127, 1), (127, 7), (331, 1), (139, 70), (15, 4)]


def _reference(length: int, root: int) -> np.ndarray:
    """Direct evaluation of x[n] = exp(-j*pi*root*n*(n+1)/length) with exact integer phases."""
    return np.array(
        [cmath.exp(-1j * math.pi * ((root * n * (n + 1)) % (2 * length)) / length) for n in range(length)]
    )


def test_small_reference_vector():
    """N = 7, u = 1 matches hand-computed values: x[0] = 1, x[1] = exp(-j*2*pi/7), x[2] = exp(-j*6*pi/7)."""
    x = zadoff_chu(7, 1)
    assert x.shape == (7,)
    assert x[0] == pytest.approx(1.0)
    assert x[1] == pytest.approx(cmath.exp(-2j * math.pi / 7))
    assert x[2] == pytest.approx(cmath.exp(-6j * math.pi / 7))


@pytest.mark.parametrize("length,root", CASES)
def test_matches_definition(length, root):
    """Every entry equals the textbook definition (reference vector from exact integer phases)."""
    np.testing.assert_allclose(zadoff_chu(length, root), _reference(length, root), rtol=0, atol=1e-12)


@pytest.mark.parametrize("length,root", CASES)
def test_unit_amplitude(length, root):
    """Constant amplitude: |x[n]| = 1, so a pilot's power is set by its amplitude alone."""
    np.testing.assert_allclose(np.abs(zadoff_chu(length, root)), 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("length,root", CASES)
def test_ideal_periodic_autocorrelation(length, root):
    """Periodic autocorrelation is N at lag 0 and zero at every other cyclic lag (to 1e-9).

    This is what makes cyclic-shift pilots orthogonal and the channel estimate exact.
    """
    x = zadoff_chu(length, root)
    acf = np.array([np.vdot(x, np.roll(x, m)) for m in range(length)])  # direct sums, no FFT
    assert acf[0] == pytest.approx(length, abs=1e-9)
    assert np.max(np.abs(acf[1:])) < 1e-9


@pytest.mark.parametrize("root", [1, 7, 60])
def test_flat_spectrum_for_prime_length(root):
    """For prime N the DFT has constant magnitude sqrt(N): all frequencies are sounded equally."""
    spectrum = np.fft.fft(zadoff_chu(127, root))
    np.testing.assert_allclose(np.abs(spectrum), np.sqrt(127), rtol=1e-9)


def test_cross_correlation_of_roots_is_flat():
    """Two roots of a prime length (difference coprime with N) cross-correlate at |.| = sqrt(N) at every lag.

    The preamble (root 7) therefore never looks like a pilot (root 1) by more than 1/sqrt(N).
    """
    a, b = zadoff_chu(127, 1), zadoff_chu(127, 7)
    xcf = np.array([np.vdot(a, np.roll(b, m)) for m in range(127)])
    np.testing.assert_allclose(np.abs(xcf), np.sqrt(127), rtol=1e-9)


@pytest.mark.parametrize("length", [-3, 0, 1, 2, 4, 128])
def test_bad_length_raises(length):
    """Lengths that are even or < 3 have no Zadoff-Chu sequence of this form."""
    with pytest.raises(ValueError, match="length"):
        zadoff_chu(length, 1)


@pytest.mark.parametrize("length,root", [(127, 0), (127, 127), (127, 200), (127, -1), (15, 3), (21, 7)])
def test_bad_root_raises(length, root):
    """Roots outside 1..N-1 or sharing a factor with N lose the CAZAC property and are refused."""
    with pytest.raises(ValueError, match="root"):
        zadoff_chu(length, root)


def test_long_sequence_keeps_full_precision():
    """A long sequence with a large root still matches exact integer phase arithmetic to 1e-9."""
    length, root = 1_000_003, 500_001  # prime length
    n = np.arange(length, dtype=np.int64)
    phase = ((n * (n + 1)) % (2 * length)) * root % (2 * length)  # exact in int64
    exact = np.exp(-1j * np.pi * phase.astype(np.float64) / length)
    assert np.max(np.abs(zadoff_chu(length, root) - exact)) < 1e-9


def test_is_prime_small_table():
    """is_prime agrees with a hand-made list below 60."""
    primes = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59}
    assert {n for n in range(-2, 60) if is_prime(n)} == primes


@pytest.mark.parametrize("n,expected", [(0, 2), (2, 2), (3, 3), (4, 5), (127, 127), (128, 131), (320, 331), (640, 641)])
def test_next_prime(n, expected):
    """next_prime returns the smallest prime >= n (pilot lengths are sized with it)."""
    assert next_prime(n) == expected
