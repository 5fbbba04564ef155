"""Per-client channel estimation from the code-orthogonal sounding frame.

The receiver takes the N samples after the cyclic prefix and correlates them circularly with the
base Zadoff-Chu sequence (one FFT each way). Because the sequence's periodic autocorrelation is a
perfect impulse, bin m holds sum_k h_k[m - k*shift] exactly: client k's impulse response appears
in its own window, the strongest bin gives its gain and integer delay, and the bins beyond the
cyclic prefix hold only noise (variance noise_power/N), which gives the noise estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from airfl.modem.frame import SoundingLayout


@dataclass(frozen=True)
class ChannelEstimates:
    """What the receiver learnt from one sounding.

    gains: complex gain per client (unit-amplitude pilot at the transmitter means this is h_k).
    delays: integer delay per client (samples), measured from the scheduled sounding time.
    noise_power: complex noise power per sample (same units as the samples squared).
    snr_db: per-client receive SNR for a unit-power transmission, 10*log10(|h_k|^2/noise_power).
    """

    gains: np.ndarray
    delays: np.ndarray
    noise_power: float
    snr_db: np.ndarray


def estimate_channels(
    window: np.ndarray, layout: SoundingLayout, pilot_amplitude: float = 1.0
) -> ChannelEstimates:
    """Estimate every client's gain and delay from the received sounding burst.

    window: the received samples starting exactly at the scheduled sounding time, at least
        layout.burst_length long (the cyclic prefix is dropped here).
    pilot_amplitude: the amplitude each client sent its pilot with (estimates are divided by it).
    """
    n = layout.length
    rx = np.asarray(window, dtype=np.complex128)
    if len(rx) < layout.burst_length:
        raise ValueError(
            f"sounding window has {len(rx)} samples; it needs cp + N = {layout.burst_length}"
        )
    body = rx[layout.cp : layout.cp + n]
    corr = np.fft.ifft(np.fft.fft(body) * np.conj(np.fft.fft(layout.base))) / n  # circular xcorr / N

    k = layout.n_clients
    starts = np.arange(k) * layout.shift
    # each client's window of cp+1 bins that can hold its (delayed) response
    offsets = np.arange(layout.cp + 1)
    taps = corr[starts[:, None] + offsets[None, :]]
    peak = np.argmax(np.abs(taps), axis=1)
    gains = taps[np.arange(k), peak] / pilot_amplitude

    noise_mask = np.ones(n, dtype=bool)
    for s in starts:
        noise_mask[s : s + layout.cp + 2] = False  # a response and one bin of margin
    noise_bins = corr[noise_mask]
    noise_power = float(n * np.mean(np.abs(noise_bins) ** 2)) if noise_bins.size else 0.0

    with np.errstate(divide="ignore"):
        snr_db = 10 * np.log10(np.abs(gains) ** 2 / noise_power) if noise_power > 0 else np.full(k, np.inf)
    return ChannelEstimates(gains=gains, delays=peak.astype(np.int64), noise_power=noise_power, snr_db=snr_db)
