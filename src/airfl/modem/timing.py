"""Sub-sample timing at the transmitter: delaying and re-timing a burst by fractions of a sample.

A transmitter whose signal arrives tau samples late advances its burst by tau: the integer part by
starting earlier, the fraction with a band-limited delay. A transmitter whose sample clock runs
fast by a fraction `stretch` relative to the receiver's (epsilon_tx - epsilon_rx; on radios whose
sample clock is locked to the carrier reference, as the AD9361's, that is CFO / carrier frequency)
would see its burst compressed by (1 + stretch) at the receiver; reading it at positions n/(1 +
stretch) instead pre-stretches it so it lands on the receiver's sample grid.
"""

from __future__ import annotations

import numpy as np

from airfl.dsp.resample import interpolate, interpolate_uniform

PAD = 32
"""Zero samples added at each end: room for the band-limited kernel's tails and the stretch."""


def fractional_delay(samples: np.ndarray, delay: float, pad: int = PAD) -> np.ndarray:
    """Delay `samples` by `delay` samples (any real value, typically |delay| < 1).

    Returns len(samples) + 2*pad samples: the burst sits at offset `pad` (plus the delay), so the
    caller transmits it `pad` samples earlier than it would the original.
    """
    x = np.asarray(samples, dtype=np.complex128)
    if delay == 0:
        return np.concatenate([np.zeros(pad), x, np.zeros(pad)])
    return interpolate_uniform(x, -pad - delay, len(x) + 2 * pad)


def retime(samples: np.ndarray, delay: float, stretch: float, pad: int = PAD) -> np.ndarray:
    """Delay by `delay` samples and pre-stretch by (1 + stretch) (see the module docstring).

    Output sample n reads the burst at position (n - pad - delay) / (1 + stretch); like
    `fractional_delay`, the result has len(samples) + 2*pad samples and the burst starts at `pad`.
    """
    x = np.asarray(samples, dtype=np.complex128)
    if stretch == 0:
        return fractional_delay(x, delay, pad)
    n = np.arange(len(x) + 2 * pad, dtype=np.float64)
    return interpolate(x, (n - pad - delay) / (1.0 + stretch))
