"""Pairs of reals <-> complex symbols: entry 2i is the in-phase part, entry 2i+1 the quadrature part.

Analog aggregation needs a linear map, so the channel's addition of symbols is addition of the
reals. An odd-length vector is padded with one zero.
"""

from __future__ import annotations

import numpy as np


def symbol_count(n_values: int) -> int:
    """Complex symbols (channel uses) needed for `n_values` reals."""
    return (n_values + 1) // 2


def reals_to_symbols(values: np.ndarray) -> np.ndarray:
    """Map a real vector of length d to ceil(d/2) complex symbols."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if len(x) % 2:
        x = np.concatenate([x, [0.0]])
    return x[0::2] + 1j * x[1::2]


def symbols_to_reals(symbols: np.ndarray, n_values: int) -> np.ndarray:
    """Inverse of `reals_to_symbols`: interleave real and imaginary parts, drop the padding."""
    s = np.asarray(symbols)
    if len(s) != symbol_count(n_values):
        raise ValueError(f"expected {symbol_count(n_values)} symbols for {n_values} values, got {len(s)}")
    out = np.empty(2 * len(s), dtype=np.float64)
    out[0::2] = s.real
    out[1::2] = s.imag
    return out[:n_values]
