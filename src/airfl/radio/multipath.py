"""Multipath: a tapped delay line at sample spacing with an exponential power-delay profile.

Tap l (delay l / fs) has mean power P_l proportional to q^l. q is chosen so that the *discrete*
profile has exactly the requested RMS delay spread tau_rms (so the statistic a test or a receiver
measures is the configured one at any sample rate): for an infinite profile the RMS delay spread
is sqrt(q) / (1 - q) samples; the profile is cut where taps fall below TAP_FLOOR_DB relative to
the first tap (at least two taps), and q is solved on the cut profile. Mean powers are normalised
to sum to 1 (the link scales them to its path gain). Each tap fades independently (fading.py).

At a narrow bandwidth the spread is a fraction of a sample and the second tap is weak: 50 ns at
1 MS/s gives P_1/P_0 = -26 dB; at 61.44 MS/s it gives about four significant taps.
"""

from __future__ import annotations

import functools
import math

import numpy as np

TAP_FLOOR_DB = -50.0
MAX_TAPS = 1024


def _tap_count(spread_samples: float) -> int:
    """Taps down to TAP_FLOOR_DB for the infinite-profile q of this spread (at least 2)."""
    u = (math.sqrt(1.0 + 4.0 * spread_samples**2) - 1.0) / (2.0 * spread_samples)  # sqrt(q)/(1-q) = s
    q = u * u
    if q <= 0.0:
        return 2
    n = math.floor(TAP_FLOOR_DB / 10.0 * math.log(10.0) / math.log(q)) + 1 if q < 1.0 else MAX_TAPS + 1
    return max(2, min(n, MAX_TAPS + 1))


def rms_delay_spread_samples(pdp: np.ndarray) -> float:
    """RMS delay spread (samples) of a power-delay profile with taps at sample spacing."""
    p = np.asarray(pdp, dtype=np.float64)
    p = p / p.sum()
    lags = np.arange(len(p))
    mean = float(np.sum(lags * p))
    return math.sqrt(max(float(np.sum(lags**2 * p)) - mean**2, 0.0))


@functools.lru_cache(maxsize=64)
def _exponential_pdp(spread_samples: float) -> tuple[float, ...]:
    n = _tap_count(spread_samples)
    if n > MAX_TAPS:
        raise ValueError(
            f"an RMS delay spread of {spread_samples:g} samples needs more than {MAX_TAPS} taps at "
            "this sample rate; lower rms_delay_spread_ns or the sample rate"
        )
    lags = np.arange(n, dtype=np.float64)
    lo, hi = 0.0, 1.0
    for _ in range(200):  # bisection on q with n fixed: the cut profile's RMS grows continuously with q
        q = 0.5 * (lo + hi)
        if rms_delay_spread_samples(q**lags) < spread_samples:
            lo = q
        else:
            hi = q
        if hi - lo < 1e-16:
            break
    p = (0.5 * (lo + hi)) ** lags
    return tuple(float(x) for x in p / p.sum())


def exponential_pdp(rms_delay_spread_s: float, sample_rate_hz: float) -> np.ndarray:
    """Mean tap powers (sum 1) of an exponential profile with RMS delay spread `rms_delay_spread_s` (s).

    0 s gives the flat channel [1.0].
    """
    if rms_delay_spread_s < 0 or not math.isfinite(rms_delay_spread_s):
        raise ValueError(f"rms_delay_spread_s must be finite and >= 0 s, got {rms_delay_spread_s}")
    if rms_delay_spread_s == 0:
        return np.ones(1)
    return np.array(_exponential_pdp(float(rms_delay_spread_s * sample_rate_hz)))


def apply_taps(z: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Tapped delay line with per-sample taps: out[m] = sum_l taps[m, l] * z[m + L - 1 - l].

    z holds the input from L-1 samples before the first output on (len(z) = M + L - 1); taps is
    (M, L) (a row per output sample, so taps can change at block boundaries) or (L,).
    """
    taps = np.asarray(taps)
    n_taps = taps.shape[-1]
    m = len(z) - n_taps + 1
    out = np.zeros(m, dtype=np.complex128)
    for lag in range(n_taps):
        gain = taps[..., lag]
        out += gain * z[n_taps - 1 - lag : n_taps - 1 - lag + m]
    return out
