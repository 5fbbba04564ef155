"""Pilots inside the single-carrier payload, and tracking of the common gain and phase with them.

Every participant sends the same known pilot symbol every `spacing` data symbols, through its
pre-equaliser, so the pilots add coherently: the receiver sees sqrt(eta) * n_active * pilot times
whatever common error remains (its own oscillator's phase noise, a residual CFO shared by all,
a gain error). Dividing each data symbol by that common gain, interpolated between pilots, removes
it. Per-client errors cannot be seen in the sum and are not corrected here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from airfl.modem.sequences import zadoff_chu

PILOT_SEQUENCE_ROOT = 5
PILOT_SEQUENCE_LENGTH = 31


def pilot_values(count: int) -> np.ndarray:
    """`count` unit-modulus pilot symbols (a Zadoff-Chu sequence, cycled)."""
    seq = zadoff_chu(PILOT_SEQUENCE_LENGTH, PILOT_SEQUENCE_ROOT)
    return np.resize(seq, count)


@dataclass(frozen=True)
class PilotPattern:
    """Positions of pilots in a payload of `n_data` symbols: one before every `spacing` data symbols
    and one after the last, so every data symbol lies between two pilots. spacing=0: no pilots."""

    n_data: int
    spacing: int = 32

    def __post_init__(self) -> None:
        if self.n_data < 1:
            raise ValueError(f"n_data must be >= 1, got {self.n_data}")
        if self.spacing < 0:
            raise ValueError(f"pilot spacing must be >= 0 symbols (0 = no pilots), got {self.spacing}")

    @cached_property
    def n_pilots(self) -> int:
        return 0 if self.spacing == 0 else -(-self.n_data // self.spacing) + 1

    @property
    def length(self) -> int:
        return self.n_data + self.n_pilots

    @cached_property
    def pilot_positions(self) -> np.ndarray:
        if self.spacing == 0:
            return np.zeros(0, dtype=np.int64)
        return np.arange(self.n_pilots, dtype=np.int64) * (self.spacing + 1) - np.maximum(
            0, np.arange(self.n_pilots) * (self.spacing + 1) - self.length + 1
        )

    @cached_property
    def data_positions(self) -> np.ndarray:
        mask = np.ones(self.length, dtype=bool)
        mask[self.pilot_positions] = False
        return np.flatnonzero(mask)

    @cached_property
    def interpolation(self) -> tuple[np.ndarray, np.ndarray]:
        """For each data symbol: the index of the pilot before it and its fractional position
        towards the next pilot (for linear interpolation of the tracked gain)."""
        pos = self.pilot_positions
        left = np.clip(np.searchsorted(pos, self.data_positions) - 1, 0, max(len(pos) - 2, 0))
        if len(pos) < 2:
            return left, np.zeros(len(left))
        frac = (self.data_positions - pos[left]) / (pos[left + 1] - pos[left])
        return left.astype(np.int64), frac.astype(np.float64)

    def insert(self, data: np.ndarray) -> np.ndarray:
        """Data symbols -> payload with pilots in place."""
        if len(data) != self.n_data:
            raise ValueError(f"pilot pattern holds {self.n_data} data symbols, got {len(data)}")
        out = np.empty(self.length, dtype=np.complex128)
        out[self.data_positions] = data
        out[self.pilot_positions] = pilot_values(self.n_pilots)
        return out


def centred_average(values: np.ndarray, width: int) -> np.ndarray:
    """Local straight-line fit: each value replaced by a least-squares line through the `width`
    nearest values (centred, shifted inwards at the ends), evaluated at its own position.

    Follows a linear trend (a residual common CFO) without bias anywhere, and averages the same
    number of values everywhere, ends included.
    """
    v = np.asarray(values, dtype=np.complex128)
    n = len(v)
    w = max(1, min(int(width), n))
    if w <= 2:
        return v.copy()
    i = np.arange(n)
    lo = np.clip(i - w // 2, 0, n - w)
    hi = lo + w  # exclusive
    x = i.astype(np.float64)
    cs = lambda a: np.concatenate([[0.0], np.cumsum(a)])  # noqa: E731
    s1, sx, sxx = float(w), cs(x), cs(x * x)
    sv, sxv = cs(v), cs(x * v)
    mx = (sx[hi] - sx[lo]) / s1
    mv = (sv[hi] - sv[lo]) / s1
    vx = (sxx[hi] - sxx[lo]) / s1 - mx * mx
    cxv = (sxv[hi] - sxv[lo]) / s1 - mx * mv
    slope = np.where(vx > 0, cxv / np.where(vx > 0, vx, 1.0), 0.0)
    return mv + slope * (x - mx)


@dataclass(frozen=True)
class CommonGainTrack:
    """What pilot tracking measured: the common gain at each pilot (1 = no common error), the
    residual common frequency (cycles/sample, from the phase slope), and the pilots' SNR (dB)."""

    gains: np.ndarray
    residual_cfo: float
    snr_db: float


def track_common_gain(
    payload: np.ndarray, pattern: PilotPattern, data_gain: float, pilot_gain: float, smoothing: int = 15
) -> tuple[np.ndarray, CommonGainTrack]:
    """Undo the nominal receive gain and the common gain error measured on the pilots.

    payload: received payload samples (pilots in place).
    data_gain: nominal gain of the data, sqrt(eta) (every participant arrives with it).
    pilot_gain: nominal gain of a pilot, sqrt(eta) * n_active (the participants' pilots add up).
    smoothing: pilots averaged (moving average) before interpolation; phase noise is slow.
    Returns the data symbols divided by data_gain and by the interpolated common error, and stats.
    """
    y = np.asarray(payload, dtype=np.complex128)
    data = y[pattern.data_positions] / data_gain
    expected = pilot_gain
    if pattern.n_pilots == 0:
        return data, CommonGainTrack(np.ones(0, dtype=np.complex128), 0.0, float("nan"))
    raw = y[pattern.pilot_positions] / (expected * pilot_values(pattern.n_pilots))
    smooth = centred_average(raw, smoothing)
    pos = pattern.pilot_positions.astype(np.float64)
    left, frac = pattern.interpolation
    if len(smooth) >= 2:
        gain = smooth[left] + (smooth[left + 1] - smooth[left]) * frac  # linear between pilots
    else:
        gain = np.full(len(left), smooth[0])
    corrected = data / gain
    residual = raw - smooth
    noise = float(np.mean(np.abs(residual) ** 2)) if len(raw) > smoothing else float("nan")
    signal = float(np.mean(np.abs(smooth) ** 2))
    snr_db = 10 * np.log10(signal / noise) if noise and noise > 0 else float("inf")
    if len(raw) >= 2:
        phase = np.unwrap(np.angle(smooth))
        slope = np.polyfit(pos, phase, 1)[0]
        residual_cfo = float(slope / (2 * np.pi))
    else:
        residual_cfo = 0.0
    return corrected, CommonGainTrack(smooth, residual_cfo, snr_db)
