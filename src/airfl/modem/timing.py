"""Sub-sample timing: delaying a burst by a fraction of a sample.

A transmitter whose signal arrives tau samples late advances its burst by tau: the integer part by
starting earlier, the fraction with this band-limited delay (exact linear phase in the frequency
domain, on a zero-padded copy so the circular shift never wraps the burst onto itself).
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sp_fft

PAD = 32
"""Zero samples added at each end before the FFT delay: the sinc tails of a fractional shift."""


def fractional_delay(samples: np.ndarray, delay: float, pad: int = PAD) -> np.ndarray:
    """Delay `samples` by `delay` samples (any real value, typically |delay| < 1).

    Returns len(samples) + 2*pad samples: the burst sits at offset `pad` (plus the delay), so the
    caller transmits it `pad` samples earlier than it would the original.
    """
    x = np.concatenate([np.zeros(pad), np.asarray(samples, dtype=np.complex128), np.zeros(pad)])
    if delay == 0:
        return x
    n = sp_fft.next_fast_len(len(x))
    freqs = np.fft.fftfreq(n)
    y = sp_fft.ifft(sp_fft.fft(x, n) * np.exp(-2j * np.pi * freqs * delay))
    return y[: len(x)]
