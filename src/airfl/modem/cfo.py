"""Carrier frequency offset: the numerically controlled oscillator that corrects it, and the
coarse estimator that finds it before the fine, pilot-based stage can take over.

Frequencies here are normalised: cycles per sample (Hz / sample_rate_hz), so a CFO of 24 kHz at
1 MS/s is 0.024. Phases are referred to a local time origin (sample 0 of the round), so the
receiver's estimates and the transmitters' corrections agree on what "phase at time t" means.
"""

from __future__ import annotations

import numpy as np


def nco(n_samples: int, cycles_per_sample: float, start: float = 0.0, rate: float = 0.0) -> np.ndarray:
    """exp(j*2*pi*(f*t + rate*t^2/2)), t = start + n for n = 0..n_samples-1: a tone (a chirp when
    the offset drifts at `rate` cycles/sample per sample), phase-continuous in local time."""
    t = start + np.arange(n_samples, dtype=np.float64)
    return np.exp(2j * np.pi * (cycles_per_sample * t + 0.5 * rate * t * t))


def correct(samples: np.ndarray, cycles_per_sample: float, start: float = 0.0, rate: float = 0.0) -> np.ndarray:
    """Remove a CFO of `cycles_per_sample` at local time 0, drifting at `rate` (cycles/sample per
    sample), from samples whose first one sits at local time `start`.

    A transmitter pre-corrects its burst the same way: then its signal reaches the receiver
    without the offset (to within the estimation error). Over a payload of tens of milliseconds a
    crystal warming up by 0.02 ppm/s moves the carrier by about 1 Hz at 2.4 GHz, enough to matter.
    """
    x = np.asarray(samples, dtype=np.complex128)
    return x * np.conj(nco(len(x), cycles_per_sample, start, rate))


def coarse_cfo(segment: np.ndarray, oversample: int = 8) -> float:
    """Frequency of the strongest tone in `segment` (cycles/sample), over the whole +-0.5 range.

    Each client sends an unmodulated carrier in its own slot; the peak of a zero-padded FFT,
    refined by a parabola through the log-magnitudes of the peak and its neighbours, gives the
    offset to a small fraction of a bin (1/len(segment)).
    """
    x = np.asarray(segment, dtype=np.complex128)
    if len(x) < 4:
        raise ValueError(f"a coarse CFO segment needs at least 4 samples, got {len(x)}")
    size = 1 << int(np.ceil(np.log2(len(x) * oversample)))
    spectrum = np.abs(np.fft.fft(x * np.hanning(len(x)), size))
    k = int(np.argmax(spectrum))
    a, b, c = (np.log(max(spectrum[(k + i) % size], 1e-300)) for i in (-1, 0, 1))
    denom = a - 2 * b + c
    delta = 0.5 * (a - c) / denom if denom != 0 else 0.0
    f = (k + delta) / size
    return float(f - 1.0 if f >= 0.5 else f)
