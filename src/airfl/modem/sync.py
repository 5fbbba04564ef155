"""Frame detection and timing with a known preamble, at a controlled false-alarm rate.

The detection metric at lag t is the normalised correlation
    m(t) = |sum_n r[t+n] p*[n]|^2 / (sum_n |p[n]|^2 * sum_n |r[t+n]|^2),  0 <= m <= 1.
It does not depend on the received power, so one threshold serves every gain setting. With noise
alone (complex white Gaussian), m(t) follows Beta(1, L-1) for a preamble of L samples, so
P(m > gamma) = (1 - gamma)^(L-1): the threshold for a false-alarm probability P_fa per lag is
gamma = 1 - P_fa^(1/(L-1)).

`sounding_found` applies the same idea to the code-orthogonal sounding: whether each client's pilot
stands out of the noise inside its own correlation window (a client whose timing offset has left
the cyclic prefix, or that is in a deep fade, does not), so its estimates are not used blindly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve

from airfl.modem.estimate import ChannelEstimates
from airfl.modem.frame import PRECURSOR, SoundingLayout


@dataclass(frozen=True)
class Detection:
    """Result of a preamble search: whether it was found, where, and how clearly.

    index: the sample of the window where the preamble starts (the best lag, even if not detected).
    metric: normalised correlation at that lag (0..1). threshold: the metric needed to declare it.
    gain: complex amplitude of the preamble at that lag (least-squares fit of r = gain * p).
    """

    detected: bool
    index: int
    metric: float
    threshold: float
    gain: complex


def detection_threshold(preamble_length: int, false_alarm_probability: float) -> float:
    """Metric threshold giving `false_alarm_probability` per lag on noise alone."""
    if not 0 < false_alarm_probability < 1:
        raise ValueError(f"false_alarm_probability must be in (0, 1), got {false_alarm_probability}")
    if preamble_length < 2:
        raise ValueError(f"preamble_length must be >= 2, got {preamble_length}")
    return float(1.0 - false_alarm_probability ** (1.0 / (preamble_length - 1)))


def correlation_metric(window: np.ndarray, preamble: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised correlation m(t) and raw correlation c(t) for every lag t where the preamble fits."""
    r = np.asarray(window, dtype=np.complex128)
    p = np.asarray(preamble, dtype=np.complex128)
    if len(r) < len(p):
        raise ValueError(f"window ({len(r)} samples) is shorter than the preamble ({len(p)} samples)")
    corr = fftconvolve(r, np.conj(p[::-1]), mode="valid")  # corr[t] = sum_n r[t+n] conj(p[n])
    energy = np.cumsum(np.concatenate([[0.0], np.abs(r) ** 2]))
    window_energy = energy[len(p) :] - energy[: len(r) - len(p) + 1]
    p_energy = float(np.sum(np.abs(p) ** 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        metric = np.abs(corr) ** 2 / (p_energy * window_energy)
    metric = np.nan_to_num(metric, nan=0.0, posinf=0.0)
    return np.clip(metric, 0.0, 1.0), corr


def detect_preamble(
    window: np.ndarray, preamble: np.ndarray, false_alarm_probability: float = 1e-6
) -> Detection:
    """Find the preamble in `window`: the lag of the largest metric, detected if above threshold."""
    metric, corr = correlation_metric(window, preamble)
    threshold = detection_threshold(len(preamble), false_alarm_probability)
    index = int(np.argmax(metric))
    gain = complex(corr[index] / np.sum(np.abs(preamble) ** 2))
    best = float(metric[index])
    return Detection(detected=best > threshold, index=index, metric=best, threshold=threshold, gain=gain)


def sounding_found(
    estimates: ChannelEstimates, layout: SoundingLayout, pilot_amplitude: float = 1.0,
    false_alarm_probability: float = 1e-6,
) -> np.ndarray:
    """Per client, whether its sounding pilot was found inside its own correlation window (bool, (K,)).

    Client k's window holds bins -PRECURSOR .. cp of its response (modem.estimate); every tap there
    is a sum over N * repeats pilot samples, so on noise alone it has variance
    noise_power / (N * repeats * pilot_amplitude^2) and its power exceeds T times that with
    probability exp(-T). The pilot counts as found when the strongest tap exceeds T = ln(W / P_fa)
    times that variance (W taps per window: `false_alarm_probability` per window on noise alone)
    and does not sit on either edge of the window (with cp = 0, where the round's target lag is the
    upper edge itself, only on the lower one). A client whose timing offset has moved beyond the
    cyclic prefix shows up as noise in its own window (its pilot lands in other bins) or as a peak
    on the window's edge (the window cuts the response); a client in a deep fade fails the first
    test too: either way its estimates are not to be used.
    """
    taps = np.abs(np.asarray(estimates.taps)) ** 2
    width = taps.shape[1]
    noise = max(float(estimates.noise_power), 0.0) / (layout.length * layout.repeats * pilot_amplitude**2)
    threshold = np.log(width / false_alarm_probability) * noise
    delays = np.asarray(estimates.delays)
    inside = (delays > -PRECURSOR) & ((delays < layout.cp) | (layout.cp == 0))
    return (taps.max(axis=1) > threshold) & inside
