"""Carrier and timing estimators shared by the `frequency` and `timing` procedures.

Both procedures send the same two building blocks and find them by correlation, never by assuming
where they are (a stock Pluto repeats its buffer at an unknown offset):

    tone     exp(j*2*pi*f_t*n), f_t a whole number of cycles per buffer so a cyclic buffer repeats it
             without a phase step. Received at f_t + CFO (cycles/sample). Far from DC (default
             0.15 * fs), so the receiver's DC offset and the transmitter's LO leakage stay apart.
    marker   a Zadoff-Chu sequence of odd prime length N with a cyclic prefix and suffix of `ext`
             samples: its periodic autocorrelation is an impulse, so a window of N samples anywhere
             in the extended block is a circular shift of the sequence by the block's delay.

Frequency (cycles/sample): a coarse peak of a Hann-windowed, zero-padded FFT inside the band
f_t +- max_offset, then a fine estimate from the phase advance between the two halves of a stretch
of tone (`lag_frequency`: angle(sum z[n+D] z*[n]) / (2*pi*D), D = half the stretch, unambiguous
within +-1/(2D) of the coarse value). Over many stretches a robust median/MAD rejects the ones a
fading-block boundary or a phase jump spoilt.

Delay (samples): the marker is found by its normalised correlation (modem.sync), its integer
position by the correlation peak after the CFO is removed, and the fraction by the slope of the
phase of Y(k) X*(k) across frequency (`phase_slope_delay`): a delay tau turns into the phase
-2*pi*k*tau/N on bin k, first from the products of neighbouring bins (no unwrapping), then refined
by a weighted least-squares line through the phases left (efficient at useful SNR). Only bins
with |f| <= band (0.4 cycles/sample) are used: near Nyquist the radios' (and the loopback's)
interpolation filters bend the phase. A residual CFO leaks into a ZC's delay (a CFO of k bins
*is* a shift of k * root^-1 mod N samples), hence the CFO is removed first; roots are picked with small
inverses (`marker_root`) so that what leaks is small: < 0.002 samples per 20 Hz at root 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.fft import fft, next_fast_len
from scipy.signal import find_peaks
from scipy.stats import theilslopes

from airfl.modem.cfo import nco
from airfl.modem.sequences import is_prime, zadoff_chu
from airfl.modem.sync import correlation_metric, detection_threshold

DELAY_BAND = 0.4
"""Highest |frequency| (cycles/sample) whose phase the delay estimate trusts."""


def check_marker_length(length: int) -> None:
    if length < 31 or not is_prime(length):
        raise ValueError(f"the Zadoff-Chu marker length must be an odd prime >= 31 samples, got {length}")


def marker_root(index: int, length: int) -> int:
    """Zadoff-Chu root of the marker of transmitter `index`: the one whose inverse modulo `length`
    is 1, -1, 2, -2, ... so a residual CFO moves its correlation peak as little as possible."""
    v = (index // 2 + 1) * (1 if index % 2 == 0 else -1)
    if abs(v) >= length // 2:
        raise ValueError(f"too many transmitters ({index + 1}) for distinct markers of length {length}")
    return pow(v % length, -1, length)


def marker_inverse(index: int) -> int:
    """|root^-1| of transmitter `index`'s marker: how many samples one bin of CFO moves its peak."""
    return index // 2 + 1


def extended(sequence: np.ndarray, ext: int) -> np.ndarray:
    """`sequence` with its last `ext` samples in front and its first `ext` behind."""
    return np.concatenate([sequence[len(sequence) - ext :], sequence, sequence[:ext]])


def marker(length: int, root: int, ext: int) -> tuple[np.ndarray, np.ndarray]:
    """(extended block to transmit, the bare sequence to correlate with)."""
    zc = zadoff_chu(length, root)
    return extended(zc, ext), zc


def whole_cycles(frequency: float, period: int) -> float:
    """`frequency` (cycles/sample) rounded to a whole number of cycles per `period` samples."""
    return round(frequency * period) / period


# -- frequency ----------------------------------------------------------------------------------


def coarse_frequency(x: np.ndarray, centre: float, half_width: float, oversample: int = 2) -> float:
    """Frequency (cycles/sample) of the strongest tone of `x` within centre +- half_width: the peak
    of a Hann-windowed FFT zero-padded `oversample` times, refined by a parabola through the
    log-magnitudes of the peak and its neighbours."""
    x = np.asarray(x, dtype=np.complex128)
    if len(x) < 16:
        raise ValueError(f"a tone needs at least 16 samples to be found, got {len(x)}")
    size = next_fast_len(len(x) * oversample)
    spectrum = np.abs(fft((x - x.mean()) * np.hanning(len(x)), size))
    freqs = np.fft.fftfreq(size)
    distance = (freqs - centre + 0.5) % 1.0 - 0.5
    inside = np.flatnonzero(np.abs(distance) <= half_width)
    k = int(inside[np.argmax(spectrum[inside])])
    a, b, c = (np.log(max(spectrum[(k + i) % size], 1e-300)) for i in (-1, 0, 1))
    denom = a - 2 * b + c
    delta = 0.5 * (a - c) / denom if denom != 0 else 0.0
    f = (k + delta) / size
    return float((f + 0.5) % 1.0 - 0.5)


def lag_frequency(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frequency (cycles/sample) of the tone in each row of `x` (a stretch, or rows of equal
    stretches) from the phase advance between its halves, and each row's |correlation| (a weight)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.complex128))
    d = x.shape[1] // 2
    c = np.sum(x[:, d : 2 * d] * np.conj(x[:, :d]), axis=1)
    return np.angle(c) / (2 * np.pi * d), np.abs(c)


def robust_inliers(values: np.ndarray, floor: float, k: float = 5.0) -> np.ndarray:
    """Mask of values within k robust standard deviations (1.4826 MAD, at least `floor`) of the median."""
    v = np.asarray(values, dtype=np.float64)
    med = np.median(v)
    spread = max(1.4826 * float(np.median(np.abs(v - med))), floor)
    return np.abs(v - med) <= k * spread


def trend_inliers(t: np.ndarray, values: np.ndarray, floor: float, k: float = 5.0) -> np.ndarray:
    """Mask of values within k robust standard deviations of a Theil-Sen line through (t, values):
    like `robust_inliers`, but a drifting quantity's trend does not widen the acceptance."""
    t = np.asarray(t, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 3:
        return np.ones(len(v), dtype=bool)
    slope, intercept, _, _ = theilslopes(v, t)
    return robust_inliers(v - (intercept + slope * t), floor, k)


def tone_frequency(
    x: np.ndarray, centre: float, half_width: float, block: int = 128
) -> tuple[float, float, float]:
    """Frequency of one stretch of tone near `centre` (cycles/sample), robust to a phase jump (a
    fading-block boundary) inside it: a coarse FFT; the median of `lag_frequency` over blocks of
    `block` samples; then the mean phase advance from each block to the next, the advances a jump
    spoilt left out (their sum telescopes to the end-to-end phase: the long baseline).
    Returns (frequency, its standard error, SNR in dB)."""
    x = np.asarray(x, dtype=np.complex128)
    coarse = coarse_frequency(x, centre, half_width)
    n_blocks = len(x) // block
    if n_blocks < 3:
        z = x * np.conj(nco(len(x), coarse))
        fine, _ = lag_frequency(z)
        f = coarse + float(fine[0])
        return f, float("nan"), tone_snr_db(x, f)
    rows = (x[: n_blocks * block] * np.conj(nco(n_blocks * block, coarse))).reshape(n_blocks, block)
    fine, _ = lag_frequency(rows)
    f1 = coarse + float(np.median(fine[robust_inliers(fine, 1e-9)]))
    level = np.mean(rows * np.conj(nco(block, f1 - coarse))[None, :], axis=1)
    # each block's mean carries the phase at its centre; with f1 removed from within the blocks,
    # the advance between consecutive blocks is 2*pi*block*(f - f1) plus any jump
    steps = level[1:] * np.conj(level[:-1]) * np.exp(-2j * np.pi * (f1 - coarse) * block)
    advance = np.angle(steps)
    ok = robust_inliers(advance, 1e-6)
    w = np.abs(steps[ok])
    f = f1 + float(np.sum(w * advance[ok]) / np.sum(w)) / (2 * np.pi * block)
    err = float(np.std(advance[ok]) / np.sqrt(max(ok.sum() - 1, 1)) / (2 * np.pi * block)) if ok.sum() > 1 else float("nan")
    return f, err, tone_snr_db(x, f)


def tone_snr_db(x: np.ndarray, frequency: float, block: int = 128) -> float:
    """SNR (dB) of a tone at `frequency` (cycles/sample): in each block of `block` samples its power
    over what is left after removing it (anything else there counts as noise); the median over
    blocks, so a phase jump between blocks does not count."""
    z = np.asarray(x, dtype=np.complex128) * np.conj(nco(len(x), frequency))
    n_blocks = max(1, len(z) // block)
    rows = z[: n_blocks * block].reshape(n_blocks, -1) if len(z) >= block else z[None, :]
    g = np.mean(rows, axis=1)
    noise = np.mean(np.abs(rows - g[:, None]) ** 2, axis=1)
    snr = np.abs(g) ** 2 / np.maximum(noise, 1e-300)
    return float(10 * np.log10(np.median(snr)))


# -- delay --------------------------------------------------------------------------------------


def phase_slope_delay(window: np.ndarray, sequence: np.ndarray, band: float = DELAY_BAND) -> tuple[float, complex]:
    """Delay (samples, |delay| < N/2) of the periodic `sequence` (length N) inside `window` (N
    samples, a circular shift of it), from the phase slope of Y(k) X*(k) across the bins with
    |f| <= band; and the complex gain (mean of Y X* / |X|^2 over those bins, delay removed)."""
    n = len(sequence)
    if len(window) != n:
        raise ValueError(f"the window must have the sequence's {n} samples, got {len(window)}")
    x_f = np.fft.fft(sequence)
    r = np.fft.fftshift(np.fft.fft(window) * np.conj(x_f) / np.abs(x_f) ** 2)
    k = np.arange(n) - n // 2
    keep = np.abs(k / n) <= band
    rk, kk = r[keep], k[keep].astype(np.float64)
    # first from neighbouring bins (no unwrapping, any |delay| < N/2), then a weighted least-squares
    # line through the small phases that remain (the efficient estimate at useful SNR)
    delay = -float(np.angle(np.sum(rk[1:] * np.conj(rk[:-1])))) * n / (2 * np.pi)
    rest = rk * np.exp(2j * np.pi * kk * delay / n)
    phase = np.angle(rest * np.conj(np.sum(rest)))
    w = np.abs(rest) ** 2
    kc = kk - np.sum(w * kk) / np.sum(w)
    slope = float(np.sum(w * kc * phase) / np.sum(w * kc * kc))
    delay -= slope * n / (2 * np.pi)
    gain = complex(np.mean(rk * np.exp(2j * np.pi * kk * delay / n)))
    return delay, gain


@dataclass(frozen=True)
class MarkerFit:
    """Where a marker was found: `position` (samples, fractional) of the first sample of its bare
    sequence in the analysed array; complex `gain`; detection `metric` (0..1)."""

    position: float
    gain: complex
    metric: float


def detect_markers(
    y: np.ndarray,
    sequence: np.ndarray,
    *,
    false_alarm_probability: float = 1e-6,
    min_distance: int = 1,
    lo: int = 0,
    hi: int | None = None,
    strongest_only: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Starts (integer sample indices into y) of `sequence` found by normalised correlation within
    lags [lo, hi), at least `min_distance` apart, above the threshold for `false_alarm_probability`
    per lag; and their metrics. `strongest_only` keeps the best one."""
    y = np.asarray(y, dtype=np.complex128)
    hi = len(y) - len(sequence) + 1 if hi is None else min(hi, len(y) - len(sequence) + 1)
    lo = max(lo, 0)
    if hi <= lo:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    metric, _ = correlation_metric(y[lo : hi + len(sequence) - 1], sequence)
    threshold = detection_threshold(len(sequence), false_alarm_probability)
    if strongest_only:
        best = int(np.argmax(metric))
        if metric[best] <= threshold:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        return np.array([lo + best]), metric[[best]]
    peaks, _ = find_peaks(np.concatenate([[0.0], metric, [0.0]]), height=threshold, distance=max(1, min_distance))
    peaks = peaks - 1
    return lo + peaks.astype(np.int64), metric[peaks]


def fit_marker(
    y: np.ndarray, start: int, sequence: np.ndarray, ext: int, cfo: float = 0.0, search: int = 2
) -> MarkerFit | None:
    """Refine a marker found near integer `start`: remove the CFO (cycles/sample) around it, take the
    correlation peak within +-`search` samples, then the fractional delay by `phase_slope_delay`.
    None when the extended block does not fit inside y."""
    n = len(sequence)
    lo = start - search - ext
    hi = start + n + search + ext
    if lo < 0 or hi > len(y):
        return None
    seg = np.asarray(y[lo:hi], dtype=np.complex128) * np.conj(nco(hi - lo, cfo, start=float(lo)))
    metric, corr = correlation_metric(seg[ext : ext + 2 * search + n], sequence)
    s = int(np.argmax(np.abs(corr)))
    base = ext + s
    delay, gain = phase_slope_delay(seg[base : base + n], sequence)
    if abs(delay) > ext / 2:
        return None
    return MarkerFit(position=float(lo + base + delay), gain=gain, metric=float(metric[s]))
