"""Zadoff-Chu sequences: constant amplitude, ideal periodic autocorrelation.

The preamble (frame detection and timing) and the sounding pilots (per-client channel estimation by
cyclic shifts of one sequence, as in LTE's SRS) are both built from them.
"""

from __future__ import annotations

from math import gcd

import numpy as np


def zadoff_chu(length: int, root: int) -> np.ndarray:
    """Zadoff-Chu sequence x[n] = exp(-j*pi*root*n*(n+1)/length), n = 0..length-1 (unit amplitude).

    `length` must be odd and coprime with `root`; a prime length gives the best cross-correlation.
    """
    if length < 3 or length % 2 == 0:
        raise ValueError(f"Zadoff-Chu length must be an odd integer >= 3, got {length}")
    if not 0 < root < length or gcd(root, length) != 1:
        raise ValueError(f"Zadoff-Chu root must be in 1..{length - 1} and coprime with {length}, got {root}")
    n = np.arange(length, dtype=np.int64)
    # Exact integer phase modulo 2*length (float64 would round root*n*(n+1) past 2^53).
    two_n = 2 * length
    phase = ((n * (n + 1)) % two_n * (root % two_n)) % two_n
    return np.exp(-1j * np.pi * phase.astype(np.float64) / length)


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


def next_prime(n: int) -> int:
    """The smallest prime >= n (n >= 2)."""
    n = max(n, 2)
    while not is_prime(n):
        n += 1
    return n
