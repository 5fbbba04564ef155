"""Finding a known burst in a capture, the same way on timed and cyclic benches.

Every procedure's burst starts with a Zadoff-Chu preamble. On a timed bench the burst arrives at
`Capture.burst_at` plus the link's delay (a few samples, unknown); on a cyclic bench (stock Pluto)
it repeats every `Capture.period` samples from an unknown offset. Either way the receiver finds it
by correlation (modem.sync.detect_preamble, at a fixed false-alarm rate) and keeps only starts with
the whole burst inside the window, so a procedure never assumes where the burst is. A carrier
offset rotates the preamble during the correlation (at 4 kHz a 127-sample preamble turns by half a
turn and its peak collapses), so a caller that knows the offset (e.g. from a tone in the same
burst, modem.cfo.coarse_cfo) passes it and the window is de-rotated first. When the
preamble is too weak to detect (a low transmit setting), a timed bench falls back to the
scheduled position; a cyclic bench cannot, and the caller is told nothing was found.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from airfl.calibration.bench import Capture
from airfl.modem.cfo import coarse_cfo
from airfl.modem.sync import detect_preamble


@dataclass(frozen=True)
class BurstPosition:
    """Where a burst starts in a capture (sample index) and how that was found.

    how: "preamble" (correlation peak above the false-alarm threshold) or "scheduled" (a timed
    bench's `burst_at`, used when the preamble was not detected). metric: the correlation metric
    (0..1) at the chosen lag.
    """

    index: int
    how: str
    metric: float


def locate_burst(
    capture: Capture,
    preamble: np.ndarray,
    burst_length: int,
    cfo: float = 0.0,
    false_alarm_probability: float = 1e-6,
) -> BurstPosition | None:
    """The start of a complete burst of `burst_length` samples that begins with `preamble`, or None.

    cfo: the carrier offset to remove before correlating (cycles/sample). Only lags whose whole
    burst fits in the window are searched, so on a cyclic capture of at least two periods some
    complete repetition is always eligible.
    """
    y = np.asarray(capture.samples, dtype=np.complex128)
    if cfo != 0.0:
        y = y * np.exp(-2j * np.pi * cfo * np.arange(len(y)))
    last_start = len(y) - int(burst_length)
    if last_start >= 0:
        detection = detect_preamble(y[: last_start + len(preamble)], preamble, false_alarm_probability)
        if detection.detected:
            return BurstPosition(detection.index, "preamble", detection.metric)
    if capture.burst_at is not None and 0 <= capture.burst_at <= max(last_start, -1):
        return BurstPosition(int(capture.burst_at), "scheduled", 0.0)
    return None


def clipped_fraction(samples: np.ndarray, adc_bits: int | None) -> float:
    """Fraction of samples whose I or Q sits at the converter's rails (within one LSB of full scale)."""
    y = np.asarray(samples)
    if len(y) == 0:
        return 0.0
    lsb = 2.0 / (1 << adc_bits) if adc_bits else 1e-9
    rail = 1.0 - 1.5 * lsb
    return float(np.mean((np.abs(y.real) >= rail) | (np.abs(y.imag) >= rail)))


def short_name(uri: str) -> str:
    """A radio's name for file names and plot labels: the last path element of its URI, without
    query (loopback://bench/client0?mode=cyclic -> client0), or the URI made file-safe."""
    tail = uri.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    tail = tail.split("://", 1)[-1]
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in tail) or "radio"


def strongest_tone(samples: np.ndarray) -> float:
    """Frequency (cycles/sample) of the strongest line in `samples` once their mean is removed: the
    receiver's DC offset (-45 dBFS on a Pluto) would otherwise win over a tone in a deep fade."""
    y = np.asarray(samples, dtype=np.complex128)
    return coarse_cfo(y - np.mean(y))
